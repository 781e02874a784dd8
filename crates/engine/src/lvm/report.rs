//! Typed views of the JSON reports of `pvs`, `vgs` and `lvs`.
//!
//! lvm2 prints `{"report":[{"pv"|"vg"|"lv":[{column: "string", ...}]}]}`; every value is a
//! string, sizes are byte counts (we ask for `--units b --nosuffix`; a trailing `B` is
//! accepted too). `lvs` prints one row per segment when segment columns (`devices`,
//! `stripes`, `segtype`) are asked for: rows of the same VG/LV are merged into one
//! [`LvReport`]. Names shown in brackets (`[lv]`, hidden or merging LVs) are unwrapped.

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::Deserialize;

/// Why a report could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReportError {
    #[error("invalid JSON: {0}")]
    Json(String),
    #[error("column {column} has non-numeric value {value:?}")]
    Number { column: &'static str, value: String },
}

#[derive(Deserialize)]
struct Report<T> {
    #[serde(default = "Vec::new")]
    report: Vec<T>,
}

#[derive(Deserialize)]
struct PvSection {
    #[serde(default)]
    pv: Vec<RawPv>,
}
#[derive(Deserialize)]
struct VgSection {
    #[serde(default)]
    vg: Vec<RawVg>,
}
#[derive(Deserialize)]
struct LvSection {
    #[serde(default)]
    lv: Vec<RawLv>,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct RawPv {
    pv_name: String,
    vg_name: String,
    pv_size: String,
    pv_free: String,
    pv_tags: String,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct RawVg {
    vg_name: String,
    vg_size: String,
    vg_free: String,
    vg_extent_size: String,
    vg_extent_count: String,
    vg_free_count: String,
    pv_count: String,
    lv_count: String,
    vg_tags: String,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct RawLv {
    vg_name: String,
    lv_name: String,
    lv_path: String,
    lv_size: String,
    lv_attr: String,
    lv_tags: String,
    stripes: String,
    segtype: String,
    devices: String,
    origin: String,
    lv_snapshot_invalid: String,
    lv_merging: String,
    pool_lv: String,
    data_percent: String,
    metadata_percent: String,
    lv_metadata_size: String,
}

/// One physical volume.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PvReport {
    pub name: PathBuf,
    /// Empty when the PV belongs to no VG.
    pub vg_name: String,
    pub size: u64,
    pub free: u64,
    pub tags: Vec<String>,
}

/// One volume group.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VgReport {
    pub name: String,
    pub size: u64,
    pub free: u64,
    pub extent_size: u64,
    pub extent_count: u64,
    pub free_count: u64,
    pub pv_count: u32,
    pub lv_count: u32,
    pub tags: Vec<String>,
}

/// One logical volume (segments merged).
#[derive(Debug, Clone, PartialEq)]
pub struct LvReport {
    pub vg_name: String,
    pub name: String,
    /// `/dev/<vg>/<lv>`; empty for hidden LVs.
    pub path: String,
    pub size: u64,
    /// `lv_attr`, e.g. `-wi-a-----`.
    pub attr: String,
    pub tags: Vec<String>,
    /// Largest stripe count over the segments (1 = linear).
    pub stripes: u32,
    /// Segment types in order (`linear`, `striped`, ...), deduplicated.
    pub segtypes: Vec<String>,
    /// Disks holding the LV, deduplicated, in order of appearance.
    pub devices: Vec<PathBuf>,
    /// Origin LV of a snapshot, empty otherwise.
    pub origin: String,
    /// The snapshot overflowed (`lv_snapshot_invalid` non-empty and not `unknown`).
    pub snapshot_invalid: bool,
    /// A snapshot merge is in progress.
    pub merging: bool,
    /// Thin pool of a thin volume or thin snapshot, empty otherwise.
    pub pool_lv: String,
    /// Thin pools, thin volumes and COW snapshots: how full the data is (percent).
    pub data_percent: Option<f64>,
    /// Thin pools: how full the metadata is (percent).
    pub metadata_percent: Option<f64>,
    /// Thin pools: size of the metadata LV in bytes (0 otherwise).
    pub metadata_size: u64,
}

impl LvReport {
    /// `lv_attr[4] == 'a'`: the LV is active (its device node exists).
    pub fn active(&self) -> bool {
        self.attr.chars().nth(4) == Some('a')
    }

    /// `lv_attr[5] == 'o'`: the device is open (mounted or otherwise in use).
    pub fn open(&self) -> bool {
        self.attr.chars().nth(5) == Some('o')
    }

    /// `lv_attr[0]` is `s` (snapshot) or `S` (invalid snapshot).
    pub fn is_snapshot(&self) -> bool {
        matches!(self.attr.chars().next(), Some('s' | 'S')) || !self.origin.is_empty()
    }

    pub fn has_tag(&self, tag: &str) -> bool {
        self.tags.iter().any(|t| t == tag)
    }

    /// A thin pool (`lv_attr[0] == 't'` or segment type `thin-pool`).
    pub fn is_thin_pool(&self) -> bool {
        self.attr.starts_with('t') || self.segtypes.iter().any(|s| s == "thin-pool")
    }

    /// A thin volume or thin snapshot: it lives in the thin pool [`LvReport::pool_lv`].
    pub fn is_thin(&self) -> bool {
        !self.pool_lv.is_empty() || self.segtypes.iter().any(|s| s == "thin")
    }

    /// Value of the first tag `key=value` (e.g. the thin pool's over-provision ratio).
    pub fn tag_value(&self, key: &str) -> Option<&str> {
        self.tags
            .iter()
            .find_map(|t| t.strip_prefix(key).and_then(|rest| rest.strip_prefix('=')))
    }
}

impl VgReport {
    pub fn has_tag(&self, tag: &str) -> bool {
        self.tags.iter().any(|t| t == tag)
    }
}

fn num(column: &'static str, value: &str) -> Result<u64, ReportError> {
    let v = value.trim();
    let v = v.strip_suffix(['B', 'b']).unwrap_or(v);
    if v.is_empty() {
        return Ok(0);
    }
    v.parse::<u64>().map_err(|_| ReportError::Number {
        column,
        value: value.to_owned(),
    })
}

/// A percentage column (`"12.50"`; empty for LVs it does not apply to). A decimal comma is
/// accepted.
fn percent(column: &'static str, value: &str) -> Result<Option<f64>, ReportError> {
    let v = value.trim();
    if v.is_empty() {
        return Ok(None);
    }
    match v.replace(',', ".").parse::<f64>() {
        Ok(p) if p.is_finite() => Ok(Some(p)),
        _ => Err(ReportError::Number {
            column,
            value: value.to_owned(),
        }),
    }
}

fn num32(column: &'static str, value: &str) -> Result<u32, ReportError> {
    num(column, value).map(|n| u32::try_from(n).unwrap_or(u32::MAX))
}

fn tags(s: &str) -> Vec<String> {
    s.split(',')
        .map(str::trim)
        .filter(|t| !t.is_empty())
        .map(str::to_owned)
        .collect()
}

fn unwrap_name(s: &str) -> String {
    s.trim()
        .trim_start_matches('[')
        .trim_end_matches(']')
        .to_owned()
}

fn parse<T: for<'de> Deserialize<'de>>(json: &str) -> Result<Vec<T>, ReportError> {
    let r: Report<T> = serde_json::from_str(json).map_err(|e| ReportError::Json(e.to_string()))?;
    Ok(r.report)
}

/// Parse `pvs --reportformat json` output.
pub fn parse_pvs(json: &str) -> Result<Vec<PvReport>, ReportError> {
    let mut out = Vec::new();
    for section in parse::<PvSection>(json)? {
        for p in section.pv {
            out.push(PvReport {
                name: PathBuf::from(p.pv_name.trim()),
                vg_name: p.vg_name.trim().to_owned(),
                size: num("pv_size", &p.pv_size)?,
                free: num("pv_free", &p.pv_free)?,
                tags: tags(&p.pv_tags),
            });
        }
    }
    Ok(out)
}

/// Parse `vgs --reportformat json` output.
pub fn parse_vgs(json: &str) -> Result<Vec<VgReport>, ReportError> {
    let mut out = Vec::new();
    for section in parse::<VgSection>(json)? {
        for v in section.vg {
            out.push(VgReport {
                name: v.vg_name.trim().to_owned(),
                size: num("vg_size", &v.vg_size)?,
                free: num("vg_free", &v.vg_free)?,
                extent_size: num("vg_extent_size", &v.vg_extent_size)?,
                extent_count: num("vg_extent_count", &v.vg_extent_count)?,
                free_count: num("vg_free_count", &v.vg_free_count)?,
                pv_count: num32("pv_count", &v.pv_count)?,
                lv_count: num32("lv_count", &v.lv_count)?,
                tags: tags(&v.vg_tags),
            });
        }
    }
    Ok(out)
}

/// `/dev/sdb(0),/dev/sdc(12)` → `[/dev/sdb, /dev/sdc]`.
fn devices(s: &str) -> Vec<PathBuf> {
    s.split(',')
        .map(str::trim)
        .filter(|d| !d.is_empty())
        .map(|d| match d.rfind('(') {
            Some(i) if d.ends_with(')') => &d[..i],
            _ => d,
        })
        .map(PathBuf::from)
        .collect()
}

/// Parse `lvs --reportformat json` output, merging the segment rows of each LV. The order of
/// first appearance is kept.
pub fn parse_lvs(json: &str) -> Result<Vec<LvReport>, ReportError> {
    let mut order: Vec<(String, String)> = Vec::new();
    let mut by_key: BTreeMap<(String, String), LvReport> = BTreeMap::new();
    for section in parse::<LvSection>(json)? {
        for l in section.lv {
            let key = (unwrap_name(&l.vg_name), unwrap_name(&l.lv_name));
            let stripes = num32("stripes", &l.stripes)?.max(1);
            let devs = devices(&l.devices);
            let segtype = l.segtype.trim().to_owned();
            match by_key.get_mut(&key) {
                Some(lv) => {
                    lv.stripes = lv.stripes.max(stripes);
                    for d in devs {
                        if !lv.devices.contains(&d) {
                            lv.devices.push(d);
                        }
                    }
                    if !segtype.is_empty() && !lv.segtypes.contains(&segtype) {
                        lv.segtypes.push(segtype);
                    }
                }
                None => {
                    let invalid = l.lv_snapshot_invalid.trim();
                    let mut uniq: Vec<PathBuf> = Vec::new();
                    for d in devs {
                        if !uniq.contains(&d) {
                            uniq.push(d);
                        }
                    }
                    let lv = LvReport {
                        vg_name: key.0.clone(),
                        name: key.1.clone(),
                        path: l.lv_path.trim().to_owned(),
                        size: num("lv_size", &l.lv_size)?,
                        attr: l.lv_attr.trim().to_owned(),
                        tags: tags(&l.lv_tags),
                        stripes,
                        segtypes: if segtype.is_empty() {
                            vec![]
                        } else {
                            vec![segtype]
                        },
                        devices: uniq,
                        origin: unwrap_name(&l.origin),
                        snapshot_invalid: !invalid.is_empty() && invalid != "unknown",
                        merging: !l.lv_merging.trim().is_empty(),
                        pool_lv: unwrap_name(&l.pool_lv),
                        data_percent: percent("data_percent", &l.data_percent)?,
                        metadata_percent: percent("metadata_percent", &l.metadata_percent)?,
                        metadata_size: num("lv_metadata_size", &l.lv_metadata_size)?,
                    };
                    order.push(key.clone());
                    by_key.insert(key, lv);
                }
            }
        }
    }
    Ok(order
        .into_iter()
        .filter_map(|k| by_key.remove(&k))
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    // Captured from lvm2 2.03.16 (`pvs`/`vgs` on two 200 MiB loop devices).
    const PVS: &str = r#"  {
      "report": [
          {
              "pv": [
                  {"pv_name":"/dev/loop0", "vg_name":"LocalStorage_PoolHDD", "pv_size":"205520896", "pv_free":"205520896", "pv_tags":""},
                  {"pv_name":"/dev/loop1", "vg_name":"LocalStorage_PoolHDD", "pv_size":"205520896", "pv_free":"205520896", "pv_tags":""},
                  {"pv_name":"/dev/sdd", "vg_name":"", "pv_size":"1073741824B", "pv_free":"0B", "pv_tags":""}
              ]
          }
      ]
  }
"#;

    const VGS: &str = r#"  {
      "report": [
          {
              "vg": [
                  {"vg_name":"LocalStorage_PoolHDD", "vg_size":"411041792", "vg_free":"411041792", "vg_extent_size":"4194304", "vg_extent_count":"98", "vg_free_count":"98", "pv_count":"2", "lv_count":"0", "vg_tags":"hwameistor.io/managed"},
                  {"vg_name":"rootvg", "vg_size":"21470642176", "vg_free":"0", "vg_extent_size":"4194304", "vg_extent_count":"5119", "vg_free_count":"0", "pv_count":"1", "lv_count":"2", "vg_tags":""}
              ]
          }
      ]
  }
"#;

    // lvs with segment columns: a striped LV, a linear LV extended onto a second PV (two
    // segments), a foreign LV and a snapshot.
    pub(crate) const LVS: &str = r#"  {
      "report": [
          {
              "lv": [
                  {"vg_name":"LocalStorage_PoolHDD", "lv_name":"pvc-str", "lv_path":"/dev/LocalStorage_PoolHDD/pvc-str", "lv_size":"25165824", "lv_attr":"-wi-a-----", "lv_tags":"hwameistor.io/managed", "stripes":"2", "segtype":"striped", "devices":"/dev/loop0(5),/dev/loop1(0)", "origin":"", "lv_snapshot_invalid":"", "lv_merging":""},
                  {"vg_name":"LocalStorage_PoolHDD", "lv_name":"pvc-lin", "lv_path":"/dev/LocalStorage_PoolHDD/pvc-lin", "lv_size":"419430400", "lv_attr":"-wi-ao----", "lv_tags":"hwameistor.io/managed,other", "stripes":"1", "segtype":"linear", "devices":"/dev/loop0(0)", "origin":"", "lv_snapshot_invalid":"", "lv_merging":""},
                  {"vg_name":"LocalStorage_PoolHDD", "lv_name":"pvc-lin", "lv_path":"/dev/LocalStorage_PoolHDD/pvc-lin", "lv_size":"419430400", "lv_attr":"-wi-ao----", "lv_tags":"hwameistor.io/managed,other", "stripes":"1", "segtype":"linear", "devices":"/dev/loop1(3)", "origin":"", "lv_snapshot_invalid":"", "lv_merging":""},
                  {"vg_name":"LocalStorage_PoolHDD", "lv_name":"foreign", "lv_path":"/dev/LocalStorage_PoolHDD/foreign", "lv_size":"8388608", "lv_attr":"-wi-------", "lv_tags":"", "stripes":"1", "segtype":"linear", "devices":"/dev/loop1(10)", "origin":"", "lv_snapshot_invalid":"", "lv_merging":""},
                  {"vg_name":"LocalStorage_PoolHDD", "lv_name":"[snap-1]", "lv_path":"", "lv_size":"25165824", "lv_attr":"swi-a-s---", "lv_tags":"hwameistor.io/managed", "stripes":"1", "segtype":"linear", "devices":"/dev/loop1(20)", "origin":"pvc-str", "lv_snapshot_invalid":"unknown", "lv_merging":""}
              ]
          }
      ]
  }
"#;

    #[test]
    fn parses_pvs() {
        let pvs = parse_pvs(PVS).unwrap();
        assert_eq!(pvs.len(), 3);
        assert_eq!(pvs[0].name, PathBuf::from("/dev/loop0"));
        assert_eq!(pvs[0].vg_name, "LocalStorage_PoolHDD");
        assert_eq!(pvs[0].size, 205520896);
        assert_eq!(pvs[2].vg_name, "");
        assert_eq!(pvs[2].size, 1073741824, "trailing B accepted");
        assert!(pvs[0].tags.is_empty());
    }

    #[test]
    fn parses_vgs() {
        let vgs = parse_vgs(VGS).unwrap();
        assert_eq!(vgs.len(), 2);
        let v = &vgs[0];
        assert_eq!(v.name, "LocalStorage_PoolHDD");
        assert_eq!(
            (v.size, v.free, v.extent_size),
            (411041792, 411041792, 4194304)
        );
        assert_eq!(
            (v.extent_count, v.free_count, v.pv_count, v.lv_count),
            (98, 98, 2, 0)
        );
        assert!(v.has_tag("hwameistor.io/managed"));
        assert!(!vgs[1].has_tag("hwameistor.io/managed"));
    }

    #[test]
    fn parses_and_merges_lvs() {
        let lvs = parse_lvs(LVS).unwrap();
        let names: Vec<&str> = lvs.iter().map(|l| l.name.as_str()).collect();
        assert_eq!(names, ["pvc-str", "pvc-lin", "foreign", "snap-1"]);

        let s = &lvs[0];
        assert_eq!(s.stripes, 2);
        assert_eq!(
            s.devices,
            [PathBuf::from("/dev/loop0"), PathBuf::from("/dev/loop1")]
        );
        assert!(s.active() && !s.open());
        assert!(!s.is_snapshot());

        let l = &lvs[1];
        assert_eq!(l.size, 419430400);
        assert_eq!(l.stripes, 1);
        assert_eq!(l.segtypes, ["linear"]);
        assert_eq!(
            l.devices,
            [PathBuf::from("/dev/loop0"), PathBuf::from("/dev/loop1")]
        );
        assert!(l.open());
        assert!(l.has_tag("hwameistor.io/managed") && l.has_tag("other"));

        assert!(!lvs[2].has_tag("hwameistor.io/managed"));
        assert!(!lvs[2].active());

        let snap = &lvs[3];
        assert!(snap.is_snapshot());
        assert_eq!(snap.origin, "pvc-str");
        assert!(!snap.snapshot_invalid, "`unknown` is not invalid");
    }

    #[test]
    fn empty_and_broken_reports() {
        let empty = "  {\n \"report\": [\n {\n \"lv\": [\n ]\n }\n ]\n }\n";
        assert!(parse_lvs(empty).unwrap().is_empty());
        assert!(matches!(parse_vgs("not json"), Err(ReportError::Json(_))));
        let bad = r#"{"report":[{"vg":[{"vg_name":"x","vg_size":"12x"}]}]}"#;
        assert_eq!(
            parse_vgs(bad).unwrap_err(),
            ReportError::Number {
                column: "vg_size",
                value: "12x".into()
            }
        );
    }
}
