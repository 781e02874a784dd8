//! Probing signatures with `blkid -p` and reading mounts and swaps from procfs.

use std::collections::BTreeMap;

use hwameistor_exec::{Cmd, Runner};

use crate::{Error, Result};

/// What `blkid -p` found at the start of a device.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Signatures {
    /// `PTTYPE` (gpt, dos).
    pub partition_table: Option<String>,
    /// `TYPE` (ext4, xfs, LVM2_member, crypto_LUKS, swap, ...); `"ambivalent"` when blkid
    /// found several conflicting signatures.
    pub fs_type: Option<String>,
}

/// Parse `blkid -p -o export` output (`KEY=VALUE` lines).
pub fn parse_blkid_export(text: &str) -> BTreeMap<String, String> {
    text.lines()
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.trim().to_owned(), v.trim().to_owned()))
        .collect()
}

/// Exit code of `blkid -p` when nothing was found.
const BLKID_NOTHING: i32 = 2;
/// Exit code of `blkid -p` for an ambivalent result (several signatures).
const BLKID_AMBIVALENT: i32 = 8;

/// Low-level probe of `dev_path` (never trusts a cache).
pub async fn probe_signatures(runner: &dyn Runner, dev_path: &str) -> Result<Signatures> {
    if !dev_path.starts_with("/dev/") {
        return Err(Error::Parse {
            what: "device path".into(),
            detail: format!("{dev_path:?} is not under /dev"),
        });
    }
    let cmd = Cmd::new("blkid").args(["-p", "-o", "export", dev_path]);
    let out = runner.output(&cmd).await?;
    match out.code {
        Some(0) => {
            let kv = parse_blkid_export(&out.stdout);
            Ok(Signatures {
                partition_table: kv.get("PTTYPE").cloned().filter(|s| !s.is_empty()),
                fs_type: kv.get("TYPE").cloned().filter(|s| !s.is_empty()),
            })
        }
        Some(BLKID_NOTHING) => Ok(Signatures::default()),
        Some(BLKID_AMBIVALENT) => Ok(Signatures {
            partition_table: None,
            fs_type: Some("ambivalent".into()),
        }),
        code => Err(Error::Exec(hwameistor_exec::Error::Failed {
            command: cmd.display(),
            code,
            stdout: out.stdout,
            stderr: out.stderr,
        })),
    }
}

/// One line of `/proc/self/mountinfo` (the parser lives in `hwameistor_core::mountinfo`).
pub use hwameistor_core::mountinfo::MountInfo as Mount;

use hwameistor_core::mountinfo::unescape;

/// Parse `/proc/self/mountinfo`.
pub fn parse_mountinfo(text: &str) -> Vec<Mount> {
    hwameistor_core::mountinfo::parse(text)
}

/// Parse `/proc/swaps`: the active swap devices/files.
pub fn parse_swaps(text: &str) -> Vec<String> {
    text.lines()
        .skip(1)
        .filter_map(|l| l.split_whitespace().next())
        .map(unescape)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use hwameistor_exec::{Output, RecordingRunner};

    #[test]
    fn mountinfo_and_swaps() {
        let mi = "22 27 0:21 / /proc rw,relatime - proc proc rw\n\
                  29 1 254:1 / / rw,relatime shared:1 - ext4 /dev/vda1 rw\n\
                  30 29 8:17 / /mnt/my\\040data rw - xfs /dev/sdb1 rw\n\
                  31 29 0:45 / /srv rw - btrfs /dev/sdc rw\n";
        let m = parse_mountinfo(mi);
        assert_eq!(m.len(), 4);
        assert_eq!(
            (m[1].major, m[1].minor, m[1].mount_point.as_str()),
            (254, 1, "/")
        );
        assert_eq!(m[2].mount_point, "/mnt/my data");
        assert_eq!(m[3].source, "/dev/sdc");
        assert_eq!(m[3].fs_type, "btrfs");
        let sw = "Filename\t\t\t\tType\t\tSize\t\tUsed\t\tPriority\n/dev/sda2 partition\t1000\t0\t-2\n/swapfile file 10 0 -3\n";
        assert_eq!(parse_swaps(sw), vec!["/dev/sda2", "/swapfile"]);
    }

    #[tokio::test]
    async fn blkid_exit_codes() {
        let r = RecordingRunner::new();
        r.respond(
            &["blkid", "-p", "-o", "export", "/dev/sdb"],
            Output::ok("DEVNAME=/dev/sdb\nPTUUID=abc\nPTTYPE=gpt\n"),
        );
        r.respond(
            &["blkid", "-p", "-o", "export", "/dev/sdc"],
            Output::failed(2, ""),
        );
        r.respond(
            &["blkid", "-p", "-o", "export", "/dev/sdd"],
            Output::ok("DEVNAME=/dev/sdd\nUUID=x\nTYPE=LVM2_member\nUSAGE=raid\n"),
        );
        r.respond(
            &["blkid", "-p", "-o", "export", "/dev/sde"],
            Output::failed(8, "ambivalent"),
        );
        r.respond(
            &["blkid", "-p", "-o", "export", "/dev/sdf"],
            Output::failed(4, "usage"),
        );
        assert_eq!(
            probe_signatures(&r, "/dev/sdb")
                .await
                .unwrap()
                .partition_table
                .as_deref(),
            Some("gpt")
        );
        assert_eq!(
            probe_signatures(&r, "/dev/sdc").await.unwrap(),
            Signatures::default()
        );
        assert_eq!(
            probe_signatures(&r, "/dev/sdd")
                .await
                .unwrap()
                .fs_type
                .as_deref(),
            Some("LVM2_member")
        );
        assert_eq!(
            probe_signatures(&r, "/dev/sde")
                .await
                .unwrap()
                .fs_type
                .as_deref(),
            Some("ambivalent")
        );
        assert!(probe_signatures(&r, "/dev/sdf").await.is_err());
        assert!(probe_signatures(&r, "-rf").await.is_err());
    }
}
