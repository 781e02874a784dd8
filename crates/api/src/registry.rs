//! Registry of every kind for generic tooling: lookup by kind, plural, singular or short name
//! (case-insensitive), printer columns, and kubectl-like table cells.
//!
//! The CLI (`hwameictl get <kind>`) and the REST server use this to print the same columns as
//! `kubectl get` does for our CRDs.

use std::sync::OnceLock;

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::{
    CustomResourceColumnDefinition, CustomResourceDefinition,
};
use serde_json::Value;

use crate::{Error, Result};

/// Names and printer columns of one kind.
#[derive(Debug, Clone, PartialEq)]
pub struct KindInfo {
    /// e.g. `LocalVolume`.
    pub kind: String,
    /// e.g. `localvolumes`.
    pub plural: String,
    /// e.g. `localvolume`.
    pub singular: String,
    /// e.g. `["lv"]`.
    pub short_names: Vec<String>,
    /// `additionalPrinterColumns` in CRD order (empty for kinds without columns, for which
    /// kubectl prints NAME and AGE).
    pub columns: Vec<CustomResourceColumnDefinition>,
    /// The kind has a status subresource.
    pub has_status: bool,
    /// The CRD's scope is `Namespaced` (none of ours are).
    pub namespaced: bool,
    /// Which generator of `crate::all_crds` makes this kind's CRD.
    generator: usize,
}

/// One printed column.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Column {
    /// Upper-cased header, as kubectl prints it.
    pub header: String,
    pub json_path: String,
    /// `string`, `integer`, `number`, `boolean` or `date`.
    pub type_: String,
    /// 0 = always shown, >0 = only with `-o wide`.
    pub priority: i32,
}

impl KindInfo {
    fn from_crd(crd: CustomResourceDefinition, generator: usize) -> Self {
        let names = &crd.spec.names;
        let version = crd.spec.versions.first();
        Self {
            kind: names.kind.clone(),
            plural: names.plural.clone(),
            singular: names
                .singular
                .clone()
                .unwrap_or_else(|| names.kind.to_lowercase()),
            short_names: names.short_names.clone().unwrap_or_default(),
            columns: version
                .and_then(|v| v.additional_printer_columns.clone())
                .unwrap_or_default(),
            has_status: version
                .and_then(|v| v.subresources.as_ref())
                .is_some_and(|s| s.status.is_some()),
            namespaced: crd.spec.scope == "Namespaced",
            generator,
        }
    }

    /// The full CustomResourceDefinition, generated again on each call.
    ///
    /// The registry keeps only names and columns: the CRDs with their OpenAPI schemas take
    /// several MiB of heap, which a long-running server would otherwise hold for nothing.
    pub fn crd(&self) -> CustomResourceDefinition {
        crate::crd_at(self.generator)
            .unwrap_or_else(|| panic!("no CRD generator for {}", self.kind))
    }

    /// `<plural>.hwameistor.io`.
    pub fn crd_name(&self) -> String {
        format!("{}.{}", self.plural, crate::consts::GROUP)
    }

    /// Does `name` (kind, plural, singular or short name, any case; also `<plural>.hwameistor.io`
    /// or `<singular>.hwameistor.io`) name this kind?
    pub fn matches(&self, name: &str) -> bool {
        kind_name_matches(
            name,
            &self.kind,
            &self.plural,
            &self.singular,
            &self.short_names,
        )
    }

    /// Columns to print: NAME first, then the CRD's columns (priority 0 only unless `wide`);
    /// kinds without printer columns get NAME and AGE, as kubectl does.
    pub fn table_columns(&self, wide: bool) -> Vec<Column> {
        let mut out = vec![Column {
            header: "NAME".into(),
            json_path: ".metadata.name".into(),
            type_: "string".into(),
            priority: 0,
        }];
        if self.columns.is_empty() {
            out.push(Column {
                header: "AGE".into(),
                json_path: ".metadata.creationTimestamp".into(),
                type_: "date".into(),
                priority: 0,
            });
            return out;
        }
        out.extend(
            self.columns
                .iter()
                .filter(|c| wide || c.priority.unwrap_or(0) == 0)
                .map(|c| Column {
                    header: c.name.to_uppercase(),
                    json_path: c.json_path.clone(),
                    type_: c.type_.clone(),
                    priority: c.priority.unwrap_or(0),
                }),
        );
        out
    }

    /// Header line cells for [`KindInfo::row`].
    pub fn headers(&self, wide: bool) -> Vec<String> {
        self.table_columns(wide)
            .into_iter()
            .map(|c| c.header)
            .collect()
    }

    /// The cells of one object (as JSON), formatted like kubectl: missing values are empty
    /// (`<none>` is not printed for CRD columns), dates become ages relative to `now`
    /// (seconds since the Unix epoch).
    pub fn row(&self, obj: &Value, wide: bool, now_unix: i64) -> Vec<String> {
        self.table_columns(wide)
            .iter()
            .map(|c| format_cell(json_path_get(obj, &c.json_path), &c.type_, now_unix))
            .collect()
    }
}

/// Every kind, sorted by plural.
pub fn kinds() -> &'static [KindInfo] {
    static KINDS: OnceLock<Vec<KindInfo>> = OnceLock::new();
    KINDS.get_or_init(|| {
        // One CRD at a time: only its names and columns are kept.
        let mut kinds: Vec<_> = (0..)
            .map_while(|i| Some(KindInfo::from_crd(crate::crd_at(i)?, i)))
            .collect();
        kinds.sort_by(|a, b| a.plural.cmp(&b.plural));
        kinds
    })
}

/// Look a kind up by kind, plural, singular or short name (case-insensitive).
pub fn lookup(name: &str) -> Option<&'static KindInfo> {
    kinds().iter().find(|k| k.matches(name))
}

/// Like [`lookup`] but with an error listing the known names.
pub fn resolve(name: &str) -> Result<&'static KindInfo> {
    lookup(name).ok_or_else(|| Error::UnknownKind {
        name: name.to_owned(),
        known: kinds()
            .iter()
            .map(|k| k.plural.clone())
            .collect::<Vec<_>>()
            .join(", "),
    })
}

/// Printer columns of a kind given any of its names.
pub fn printer_columns(
    kind_or_short_or_plural: &str,
) -> Option<&'static [CustomResourceColumnDefinition]> {
    lookup(kind_or_short_or_plural).map(|k| k.columns.as_slice())
}

/// Evaluate a simple kubectl column JSONPath (`.a.b`, `.a[0].b`, `.a.b[*]`) against an object.
/// Keys containing dots are not supported (kubectl column paths never use them here).
pub fn json_path_get<'a>(obj: &'a Value, path: &str) -> Option<&'a Value> {
    let path = path.trim().trim_start_matches('{').trim_end_matches('}');
    let mut cur = obj;
    for seg in path
        .trim_start_matches('.')
        .split('.')
        .filter(|s| !s.is_empty())
    {
        let (key, indexes) = match seg.find('[') {
            Some(i) => (&seg[..i], &seg[i..]),
            None => (seg, ""),
        };
        if !key.is_empty() {
            cur = cur.get(key)?;
        }
        let mut rest = indexes;
        while let Some(stripped) = rest.strip_prefix('[') {
            let end = stripped.find(']')?;
            let idx = &stripped[..end];
            if idx != "*" {
                cur = cur.get(idx.parse::<usize>().ok()?)?;
            }
            rest = &stripped[end + 1..];
        }
    }
    Some(cur)
}

/// Format a cell like kubectl: strings as-is, numbers and booleans as text, arrays/objects as
/// compact JSON, dates (`type_ == "date"`) as an age such as `5m31s` or `28h`.
pub fn format_cell(v: Option<&Value>, type_: &str, now_unix: i64) -> String {
    match v {
        None | Some(Value::Null) => String::new(),
        Some(Value::String(s)) if type_ == "date" => match parse_rfc3339_unix(s) {
            Some(t) => format_age(now_unix.saturating_sub(t)),
            None => s.clone(),
        },
        Some(Value::String(s)) => s.clone(),
        Some(Value::Bool(b)) => b.to_string(),
        Some(Value::Number(n)) => n.to_string(),
        Some(other) => other.to_string(),
    }
}

/// kubectl's human-readable duration (`HumanDuration`): `45s`, `5m31s`, `3h4m`, `28h`, `5d23h`,
/// `53y`; `<invalid>` for times more than a second in the future.
pub fn format_age(secs: i64) -> String {
    if secs < -1 {
        return "<invalid>".to_owned();
    }
    let s = secs.max(0);
    if s < 60 * 2 {
        return format!("{s}s");
    }
    let m = s / 60;
    if m < 10 {
        let rem = s % 60;
        return if rem == 0 {
            format!("{m}m")
        } else {
            format!("{m}m{rem}s")
        };
    }
    if m < 60 * 3 {
        return format!("{m}m");
    }
    let h = s / 3600;
    if h < 8 {
        let rem = (s % 3600) / 60;
        return if rem == 0 {
            format!("{h}h")
        } else {
            format!("{h}h{rem}m")
        };
    }
    if h < 48 {
        return format!("{h}h");
    }
    if h < 24 * 8 {
        let d = h / 24;
        let rem = h % 24;
        return if rem == 0 {
            format!("{d}d")
        } else {
            format!("{d}d{rem}h")
        };
    }
    if h < 24 * 365 * 2 {
        return format!("{}d", h / 24);
    }
    if h < 24 * 365 * 8 {
        let d = h / 24;
        let y = d / 365;
        let rem = d % 365;
        return if rem == 0 {
            format!("{y}y")
        } else {
            format!("{y}y{rem}d")
        };
    }
    format!("{}y", h / 24 / 365)
}

/// Parse `YYYY-MM-DDTHH:MM:SS[.frac](Z|±HH:MM)` to Unix seconds.
pub fn parse_rfc3339_unix(s: &str) -> Option<i64> {
    s.parse::<k8s_openapi::jiff::Timestamp>()
        .ok()
        .map(|t| t.as_second())
}

/// Does `name` (any case; also `<name>.hwameistor.io` or `<name>.v1alpha1[.hwameistor.io]`)
/// name the kind with these names? [`KindInfo::matches`], for callers (the CLI) that learn
/// the names from the server's discovery instead of the registry.
pub fn kind_name_matches(
    name: &str,
    kind: &str,
    plural: &str,
    singular: &str,
    short_names: &[String],
) -> bool {
    let name = name.trim();
    let base = name
        .strip_suffix(".hwameistor.io")
        .or_else(|| name.strip_suffix(".v1alpha1.hwameistor.io"))
        .unwrap_or(name);
    let base = base.strip_suffix(".v1alpha1").unwrap_or(base);
    [kind, plural, singular]
        .into_iter()
        .chain(short_names.iter().map(String::as_str))
        .any(|n| n.eq_ignore_ascii_case(base))
}
