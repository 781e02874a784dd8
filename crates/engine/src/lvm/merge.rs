//! Rollback of a COW snapshot (`lvconvert --merge`) and the progress of the merge.
//!
//! `lvconvert --merge <vg>/<snap>` turns the snapshot into a merging snapshot of its origin;
//! the kernel's `snapshot-merge` target copies the saved chunks back into the origin and the
//! snapshot LV disappears from the metadata when everything is copied. Without
//! `--background`, lvconvert waits for the whole merge in the foreground (polling every 15 s by
//! default), so a large merge would outlive our command timeout; [`merge_cmd`] adds
//! `--background` and the progress is read from `lvs` instead ([`merge_progress`]).
//!
//! **How LVM measures a merge.** lvm2's own poller (`poll_merge_progress` in
//! `tools/lvconvert_poll.c`) prints `100 − snapshot percent`, and the snapshot percent falls
//! to 0 as chunks are merged. `lvs` reports that percent as `snap_percent` on the merging
//! snapshot and on the merging origin (`_snpercent_disp` accepts both); `copy_percent` is the
//! sync percent of mirrors, RAID and pvmove and stays empty for snapshot merges, so it is not
//! used. Note that the figure is relative to the snapshot's COW space, as LVM prints it: a
//! snapshot that holds few changes starts its merge near 100 %.
//!
//! States read from one `lvs -a` report of the VG ([`parse_merge_progress`]):
//! - the snapshot LV is gone → [`MergeProgress::Done`];
//! - merging (`lv_merging`, or `lv_attr[0]` `S` / origin `O`) → `Running { percent }`, or
//!   `Delayed` while the origin is open (LVM defers the merge to the origin's next
//!   activation) or no percent is reported yet;
//! - `lv_merge_failed` or an invalid snapshot → `Failed` with the reason;
//! - otherwise the snapshot exists and no merge was asked for → `NotMerging`.

use hwameistor_core::names;
use hwameistor_exec::{Cmd, Runner};

use super::cmd::Lvm;
use super::report::ReportError;
use super::validate_pool;
use crate::error::{Context, Error, Result};

/// Columns of the merge report.
pub const MERGE_FIELDS: &str =
    "lv_name,origin,lv_attr,snap_percent,lv_merging,lv_merge_failed,lv_snapshot_invalid";

/// Where a snapshot merge (rollback) stands.
#[derive(Debug, Clone, PartialEq)]
pub enum MergeProgress {
    /// The snapshot LV is gone: the merge finished (or there was nothing to merge).
    Done,
    /// The merge runs; `percent` done (0–100), as LVM computes it.
    Running { percent: f64 },
    /// A merge was requested but has not started: the origin is open (LVM starts it at the
    /// origin's next activation) or LVM reports no percent yet.
    Delayed { reason: String },
    /// The snapshot exists and is not being merged.
    NotMerging,
    /// The merge failed or cannot run.
    Failed { reason: String },
}

impl MergeProgress {
    /// Percent done for the status: `Done` is 100, `Running` rounds down (100 only when LVM
    /// reports the last chunk merged), the rest 0.
    pub fn percent(&self) -> i32 {
        match self {
            MergeProgress::Done => 100,
            MergeProgress::Running { percent } => percent.clamp(0.0, 100.0).floor() as i32,
            _ => 0,
        }
    }
}

/// `lvconvert -y --merge <vg>/<snap> --background`: start the merge and return at once.
pub fn merge_cmd(lvm: &Lvm, vg: &str, snapshot: &str) -> Cmd {
    lvm.lv_merge(vg, snapshot).arg("--background")
}

/// `lvs -a --reportformat json -o <MERGE_FIELDS> <vg>` (hidden LVs included: LVM shows a
/// merging snapshot in brackets).
pub fn merge_report_cmd(vg: &str) -> Cmd {
    Cmd::new("lvs")
        .args(["-a", "--reportformat", "json", "-o", MERGE_FIELDS])
        .arg(vg)
        .timeout(std::time::Duration::from_secs(60))
        .env("LVM_SUPPRESS_FD_WARNINGS", "1")
}

#[derive(serde::Deserialize)]
struct Report {
    #[serde(default)]
    report: Vec<Section>,
}

#[derive(serde::Deserialize)]
struct Section {
    #[serde(default)]
    lv: Vec<Row>,
}

#[derive(serde::Deserialize, Default)]
#[serde(default)]
struct Row {
    lv_name: String,
    origin: String,
    lv_attr: String,
    snap_percent: String,
    lv_merging: String,
    lv_merge_failed: String,
    lv_snapshot_invalid: String,
}

/// A binary lvs column: set when non-empty and not `unknown`.
fn flag(s: &str) -> bool {
    let s = s.trim();
    !s.is_empty() && s != "unknown" && s != "0"
}

fn name(s: &str) -> &str {
    s.trim().trim_start_matches('[').trim_end_matches(']')
}

/// A percent column: `None` when empty; a decimal comma is accepted.
fn percent(s: &str) -> Result<Option<f64>, ReportError> {
    let s = s.trim().trim_end_matches('%');
    if s.is_empty() {
        return Ok(None);
    }
    s.replace(',', ".")
        .parse::<f64>()
        .map(|p| Some(p.clamp(0.0, 100.0)))
        .map_err(|_| ReportError::Number {
            column: "snap_percent",
            value: s.to_owned(),
        })
}

/// Read the merge state of `snapshot` (a snapshot of `origin`) from a [`merge_report_cmd`]
/// report.
pub fn parse_merge_progress(
    json: &str,
    origin: &str,
    snapshot: &str,
) -> Result<MergeProgress, ReportError> {
    let r: Report = serde_json::from_str(json).map_err(|e| ReportError::Json(e.to_string()))?;
    let rows: Vec<Row> = r.report.into_iter().flat_map(|s| s.lv).collect();
    let Some(snap) = rows.iter().find(|r| name(&r.lv_name) == snapshot) else {
        return Ok(MergeProgress::Done);
    };
    let orig = rows.iter().find(|r| name(&r.lv_name) == origin);
    if flag(&snap.lv_merge_failed) || orig.is_some_and(|o| flag(&o.lv_merge_failed)) {
        return Ok(MergeProgress::Failed {
            reason: "LVM reports the merge failed; retry the rollback or inspect the VG".into(),
        });
    }
    let merging = flag(&snap.lv_merging)
        || snap.lv_attr.starts_with('S')
        || orig.is_some_and(|o| o.lv_attr.starts_with('O'));
    if flag(&snap.lv_snapshot_invalid) {
        return Ok(MergeProgress::Failed {
            reason: "the snapshot is invalid (its change space overflowed); it cannot be merged"
                .into(),
        });
    }
    if !merging {
        return Ok(MergeProgress::NotMerging);
    }
    if orig.is_some_and(|o| o.lv_attr.chars().nth(5) == Some('o')) {
        return Ok(MergeProgress::Delayed {
            reason: format!(
                "the origin {origin} is open; LVM merges when it is next activated (close it, \
                 or deactivate and activate it)"
            ),
        });
    }
    let pct = match percent(&snap.snap_percent)? {
        Some(p) => Some(p),
        None => match orig {
            Some(o) => percent(&o.snap_percent)?,
            None => None,
        },
    };
    Ok(match pct {
        Some(p) => MergeProgress::Running { percent: 100.0 - p },
        None => MergeProgress::Delayed {
            reason: "the merge has not started yet".into(),
        },
    })
}

/// Ask the host how far the merge of `snapshot` into `origin` in `pool` got.
pub async fn merge_progress(
    runner: &dyn Runner,
    pool: &str,
    origin: &str,
    snapshot: &str,
) -> Result<MergeProgress> {
    const OP: &str = "merge progress";
    validate_pool(pool)?;
    names::validate("volume", origin)?;
    names::validate("snapshot", snapshot)?;
    let ctx = Context::volume(pool, snapshot);
    let out = runner
        .run(&merge_report_cmd(pool))
        .await
        .map_err(|e| Error::command(OP, ctx.clone(), e))?;
    parse_merge_progress(&out.stdout, origin, snapshot).map_err(|e| Error::Parse {
        op: OP,
        ctx,
        message: format!("output of lvs: {e}"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use hwameistor_exec::{Output, RecordingRunner};

    const VG: &str = "LocalStorage_PoolHDD";

    /// A snapshot before the rollback (22.5 % of its COW space used).
    const BEFORE: &str = r#"{"report":[{"lv":[
        {"lv_name":"pvc-src", "origin":"", "lv_attr":"owi-a-s---", "snap_percent":"", "lv_merging":"", "lv_merge_failed":"", "lv_snapshot_invalid":""},
        {"lv_name":"snap-full", "origin":"pvc-src", "lv_attr":"sri-a-s---", "snap_percent":"22.50", "lv_merging":"", "lv_merge_failed":"", "lv_snapshot_invalid":""}
    ]}]}"#;

    /// Merging: the snapshot is shown in brackets, 7.25 % left to merge.
    const MERGING: &str = r#"{"report":[{"lv":[
        {"lv_name":"pvc-src", "origin":"", "lv_attr":"Owi-a-s---", "snap_percent":"7.25", "lv_merging":"", "lv_merge_failed":"", "lv_snapshot_invalid":""},
        {"lv_name":"[snap-full]", "origin":"pvc-src", "lv_attr":"Sri-a-s---", "snap_percent":"7.25", "lv_merging":"merging", "lv_merge_failed":"", "lv_snapshot_invalid":""}
    ]}]}"#;

    /// Merge requested while the origin was open: deferred, the origin shows no percent.
    const DELAYED: &str = r#"{"report":[{"lv":[
        {"lv_name":"pvc-src", "origin":"", "lv_attr":"Owi-aos---", "snap_percent":"", "lv_merging":"", "lv_merge_failed":"", "lv_snapshot_invalid":""},
        {"lv_name":"[snap-full]", "origin":"pvc-src", "lv_attr":"Sri-a-s---", "snap_percent":"22.50", "lv_merging":"merging", "lv_merge_failed":"", "lv_snapshot_invalid":""}
    ]}]}"#;

    /// After the merge: the snapshot LV is gone.
    const AFTER: &str = r#"{"report":[{"lv":[
        {"lv_name":"pvc-src", "origin":"", "lv_attr":"-wi-a-----", "snap_percent":"", "lv_merging":"", "lv_merge_failed":"", "lv_snapshot_invalid":""}
    ]}]}"#;

    const FAILED: &str = r#"{"report":[{"lv":[
        {"lv_name":"pvc-src", "origin":"", "lv_attr":"Owi-a-s---", "snap_percent":"", "lv_merging":"", "lv_merge_failed":"merge failed", "lv_snapshot_invalid":""},
        {"lv_name":"[snap-full]", "origin":"pvc-src", "lv_attr":"Sri-a-s---", "snap_percent":"", "lv_merging":"merging", "lv_merge_failed":"merge failed", "lv_snapshot_invalid":""}
    ]}]}"#;

    const INVALID: &str = r#"{"report":[{"lv":[
        {"lv_name":"pvc-src", "origin":"", "lv_attr":"owi-a-s---", "snap_percent":"", "lv_merging":"", "lv_merge_failed":"", "lv_snapshot_invalid":""},
        {"lv_name":"snap-small", "origin":"pvc-src", "lv_attr":"sri-I-s---", "snap_percent":"100.00", "lv_merging":"", "lv_merge_failed":"", "lv_snapshot_invalid":"snapshot invalid"}
    ]}]}"#;

    fn parse(json: &str, snap: &str) -> MergeProgress {
        parse_merge_progress(json, "pvc-src", snap).unwrap()
    }

    #[test]
    fn progress_is_100_minus_the_snapshot_percent() {
        assert_eq!(parse(BEFORE, "snap-full"), MergeProgress::NotMerging);
        let m = parse(MERGING, "snap-full");
        assert_eq!(m, MergeProgress::Running { percent: 92.75 });
        assert_eq!(m.percent(), 92);
        assert_eq!(parse(AFTER, "snap-full"), MergeProgress::Done);
        assert_eq!(MergeProgress::Done.percent(), 100);
        // Never 100 while LVM still has a chunk to merge.
        let almost = MergeProgress::Running { percent: 99.99 };
        assert_eq!(almost.percent(), 99);
    }

    #[test]
    fn origin_percent_is_used_when_the_snapshot_row_has_none() {
        let json = MERGING.replace(
            r#""snap_percent":"7.25", "lv_merging":"merging""#,
            r#""snap_percent":"", "lv_merging":"merging""#,
        );
        assert_eq!(
            parse(&json, "snap-full"),
            MergeProgress::Running { percent: 92.75 }
        );
        // Neither reports a percent: not started.
        let json = json.replace(r#""snap_percent":"7.25""#, r#""snap_percent":"""#);
        assert!(matches!(
            parse(&json, "snap-full"),
            MergeProgress::Delayed { .. }
        ));
    }

    #[test]
    fn open_origin_delays_failures_and_invalid_snapshots_are_reported() {
        match parse(DELAYED, "snap-full") {
            MergeProgress::Delayed { reason } => assert!(reason.contains("open"), "{reason}"),
            other => panic!("{other:?}"),
        }
        match parse(FAILED, "snap-full") {
            MergeProgress::Failed { reason } => assert!(reason.contains("failed"), "{reason}"),
            other => panic!("{other:?}"),
        }
        match parse(INVALID, "snap-small") {
            MergeProgress::Failed { reason } => assert!(reason.contains("invalid"), "{reason}"),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn decimal_comma_and_garbage() {
        let json = MERGING.replace("7.25", "7,25");
        assert_eq!(
            parse(&json, "snap-full"),
            MergeProgress::Running { percent: 92.75 }
        );
        let json = MERGING.replace("7.25", "lots");
        assert!(parse_merge_progress(&json, "pvc-src", "snap-full").is_err());
        assert!(parse_merge_progress("not json", "pvc-src", "snap-full").is_err());
    }

    #[test]
    fn commands() {
        assert_eq!(
            merge_cmd(&Lvm::default(), VG, "snap-1").display(),
            "lvconvert -y --merge LocalStorage_PoolHDD/snap-1 --background"
        );
        assert_eq!(
            merge_report_cmd(VG).display(),
            format!("lvs -a --reportformat json -o {MERGE_FIELDS} LocalStorage_PoolHDD")
        );
    }

    #[tokio::test]
    async fn merge_progress_runs_lvs_and_validates_names() {
        let fake = RecordingRunner::new();
        let argv = merge_report_cmd(VG).argv();
        let refs: Vec<&str> = argv.iter().map(String::as_str).collect();
        fake.respond(&refs, Output::ok(MERGING));
        let p = merge_progress(&fake, VG, "pvc-src", "snap-full")
            .await
            .unwrap();
        assert_eq!(p, MergeProgress::Running { percent: 92.75 });
        assert!(
            merge_progress(&fake, VG, "pvc-src", "bad name; rm")
                .await
                .is_err()
        );
        assert!(
            merge_progress(&fake, "other-vg", "pvc-src", "snap-full")
                .await
                .is_err()
        );
    }
}
