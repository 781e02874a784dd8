//! Typed builders for the lvm2 command lines we run.
//!
//! Every report command uses `--reportformat json --units b --nosuffix`, so sizes are plain
//! byte counts. Every mutating command answers prompts with `-y`. Names must have been
//! validated by the caller (the engine does it); the builders only assemble argv.

use std::path::Path;
use std::time::Duration;

use hwameistor_exec::Cmd;

/// Report options shared by `pvs`, `vgs` and `lvs`.
pub const REPORT_ARGS: &[&str] = &["--reportformat", "json", "--units", "b", "--nosuffix"];

/// Columns of our `pvs` report.
pub const PV_FIELDS: &str = "pv_name,vg_name,pv_size,pv_free,pv_tags";
/// Columns of our `vgs` report.
pub const VG_FIELDS: &str = "vg_name,vg_size,vg_free,vg_extent_size,vg_extent_count,vg_free_count,pv_count,lv_count,vg_tags";
/// Columns of our `lvs` report (one row per segment; rows are merged by VG/LV).
pub const LV_FIELDS: &str = "vg_name,lv_name,lv_path,lv_size,lv_attr,lv_tags,stripes,segtype,devices,origin,lv_snapshot_invalid,lv_merging,pool_lv,data_percent,metadata_percent,lv_metadata_size";

/// Builders for lvm2 commands. Stateless: each function returns one [`Cmd`].
#[derive(Debug, Clone)]
pub struct Lvm {
    timeout: Duration,
}

impl Default for Lvm {
    fn default() -> Self {
        Lvm {
            timeout: Duration::from_secs(120),
        }
    }
}

fn size_arg(bytes: u64) -> String {
    format!("{bytes}b")
}

fn dev_str(p: &Path) -> String {
    p.to_string_lossy().into_owned()
}

impl Lvm {
    /// Builders whose commands time out after `timeout`.
    pub fn new(timeout: Duration) -> Self {
        Lvm { timeout }
    }

    fn cmd(&self, program: &str) -> Cmd {
        Cmd::new(program).timeout(self.timeout)
    }

    /// `pvs --reportformat json --units b --nosuffix -o <PV_FIELDS>`
    pub fn pvs(&self) -> Cmd {
        self.cmd("pvs")
            .args(REPORT_ARGS.iter().copied())
            .args(["-o", PV_FIELDS])
    }

    /// `vgs ... -o <VG_FIELDS> [vg]`
    pub fn vgs(&self, vg: Option<&str>) -> Cmd {
        let c = self
            .cmd("vgs")
            .args(REPORT_ARGS.iter().copied())
            .args(["-o", VG_FIELDS]);
        match vg {
            Some(vg) => c.arg(vg),
            None => c,
        }
    }

    /// `lvs ... -o <LV_FIELDS> [vg]`
    pub fn lvs(&self, vg: Option<&str>) -> Cmd {
        let c = self
            .cmd("lvs")
            .args(REPORT_ARGS.iter().copied())
            .args(["-o", LV_FIELDS]);
        match vg {
            Some(vg) => c.arg(vg),
            None => c,
        }
    }

    /// `lvs ... -o <LV_FIELDS> <vg>/<lv>`: one LV only (fails with "Failed to find logical
    /// volume" when it is missing), cheaper than listing the VG when it holds many LVs.
    pub fn lvs_one(&self, vg: &str, lv: &str) -> Cmd {
        self.cmd("lvs")
            .args(REPORT_ARGS.iter().copied())
            .args(["-o", LV_FIELDS])
            .arg(format!("{vg}/{lv}"))
    }

    /// `vgcreate -y --addtag <tag> <vg> <dev...>` (the PVs are created implicitly).
    pub fn vg_create(&self, vg: &str, devs: &[&Path], tag: &str) -> Cmd {
        self.cmd("vgcreate")
            .args(["-y", "--addtag", tag, vg])
            .args(devs.iter().map(|d| dev_str(d)))
    }

    /// `vgextend -y <vg> <dev...>`
    pub fn vg_extend(&self, vg: &str, devs: &[&Path]) -> Cmd {
        self.cmd("vgextend")
            .args(["-y", vg])
            .args(devs.iter().map(|d| dev_str(d)))
    }

    /// `pvresize -y <dev>` after a disk grew.
    pub fn pv_resize(&self, dev: &Path) -> Cmd {
        self.cmd("pvresize").args(["-y".to_string(), dev_str(dev)])
    }

    /// `lvcreate -y --addtag <tag> --wipesignatures y --zero y -n <lv> -L <size>b
    /// [-i <stripes>] <vg>`. Signatures left on recycled extents are wiped so a new volume
    /// never looks "already formatted" with someone else's data.
    pub fn lv_create(&self, vg: &str, lv: &str, size_bytes: u64, stripes: u32, tag: &str) -> Cmd {
        let mut c = self.cmd("lvcreate").args([
            "-y",
            "--addtag",
            tag,
            "--wipesignatures",
            "y",
            "--zero",
            "y",
            "-n",
            lv,
            "-L",
        ]);
        c = c.arg(size_arg(size_bytes));
        if stripes > 1 {
            c = c.args(["-i".to_string(), stripes.to_string()]);
        }
        c.arg(vg)
    }

    /// `lvextend -y -L <size>b <vg>/<lv>` (a striped LV keeps its stripes).
    pub fn lv_extend(&self, vg: &str, lv: &str, size_bytes: u64) -> Cmd {
        self.cmd("lvextend")
            .args(["-y", "-L"])
            .arg(size_arg(size_bytes))
            .arg(format!("{vg}/{lv}"))
    }

    /// `lvremove -y <vg>/<lv>`
    pub fn lv_remove(&self, vg: &str, lv: &str) -> Cmd {
        self.cmd("lvremove").arg("-y").arg(format!("{vg}/{lv}"))
    }

    /// `lvremove -y <vg>/<lv>...`: several LVs of one VG in one command (one process start,
    /// device scan and metadata read for all of them).
    pub fn lv_remove_many(&self, vg: &str, lvs: &[&str]) -> Cmd {
        self.cmd("lvremove")
            .arg("-y")
            .args(lvs.iter().map(|lv| format!("{vg}/{lv}")))
    }

    /// `lvchange -ay|-an <vg>/<lv>`
    pub fn lv_change_active(&self, vg: &str, lv: &str, active: bool) -> Cmd {
        self.cmd("lvchange")
            .arg(if active { "-ay" } else { "-an" })
            .arg(format!("{vg}/{lv}"))
    }

    /// `lvcreate -y --addtag <tag> -s -n <snap> -L <size>b -p r <vg>/<lv>`: a read-only
    /// copy-on-write snapshot with `size` bytes of room for changes.
    pub fn lv_snapshot(&self, vg: &str, lv: &str, snap: &str, size_bytes: u64, tag: &str) -> Cmd {
        self.cmd("lvcreate")
            .args(["-y", "--addtag", tag, "-s", "-n", snap, "-L"])
            .arg(size_arg(size_bytes))
            .args(["-p", "r"])
            .arg(format!("{vg}/{lv}"))
    }

    /// `lvconvert -y --merge <vg>/<snap>`: roll the origin back to the snapshot.
    pub fn lv_merge(&self, vg: &str, snap: &str) -> Cmd {
        self.cmd("lvconvert")
            .args(["-y", "--merge"])
            .arg(format!("{vg}/{snap}"))
    }

    // --- thin provisioning (see [`super::thin`]) ---------------------------------------

    /// `lvcreate -y --addtag <tag>... --type thin-pool -Z y -n <pool> -L <data>b
    /// [--poolmetadatasize <meta>b] <vg>`: a thin pool whose new blocks are zeroed before a
    /// thin volume sees them (`-Z y`), so no thin volume ever reads another's old data.
    /// `metadata_bytes` 0 lets lvm size the metadata.
    pub fn thin_pool_create(
        &self,
        vg: &str,
        pool: &str,
        data_bytes: u64,
        metadata_bytes: u64,
        tags: &[&str],
    ) -> Cmd {
        let mut c = self.cmd("lvcreate").arg("-y");
        for t in tags {
            c = c.args(["--addtag", t]);
        }
        c = c
            .args(["--type", "thin-pool", "-Z", "y", "-n", pool, "-L"])
            .arg(size_arg(data_bytes));
        if metadata_bytes > 0 {
            c = c.arg("--poolmetadatasize").arg(size_arg(metadata_bytes));
        }
        c.arg(vg)
    }

    /// `lvextend -y --poolmetadatasize <meta>b <vg>/<pool>`: grow a thin pool's metadata.
    pub fn thin_pool_extend_metadata(&self, vg: &str, pool: &str, metadata_bytes: u64) -> Cmd {
        self.cmd("lvextend")
            .args(["-y", "--poolmetadatasize"])
            .arg(size_arg(metadata_bytes))
            .arg(format!("{vg}/{pool}"))
    }

    /// `lvchange [--deltag <old>] --addtag <new> <vg>/<lv>`: replace one tag.
    pub fn lv_retag(&self, vg: &str, lv: &str, old: Option<&str>, new: &str) -> Cmd {
        let mut c = self.cmd("lvchange");
        if let Some(old) = old {
            c = c.args(["--deltag", old]);
        }
        c.args(["--addtag", new]).arg(format!("{vg}/{lv}"))
    }

    /// `lvcreate -y --addtag <tag> --type thin -V <size>b --thinpool <pool> -n <lv> <vg>`: a
    /// thin volume of `size` virtual bytes; blocks are allocated in the pool on first write.
    pub fn thin_create(&self, vg: &str, pool: &str, lv: &str, size_bytes: u64, tag: &str) -> Cmd {
        self.cmd("lvcreate")
            .args(["-y", "--addtag", tag, "--type", "thin", "-V"])
            .arg(size_arg(size_bytes))
            .args(["--thinpool", pool, "-n", lv, vg])
    }

    /// `lvcreate -y --addtag <tag> -s -k n -p r -n <snap> <vg>/<lv>`: a read-only thin
    /// snapshot of the thin volume `lv`. No size: it shares the origin's blocks in the thin
    /// pool. `-k n` clears the activation-skip flag lvm sets on thin snapshots, so the
    /// snapshot is active (readable) like a COW snapshot.
    pub fn thin_snapshot(&self, vg: &str, lv: &str, snap: &str, tag: &str) -> Cmd {
        self.cmd("lvcreate")
            .args([
                "-y", "--addtag", tag, "-s", "-k", "n", "-p", "r", "-n", snap,
            ])
            .arg(format!("{vg}/{lv}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line(c: &Cmd) -> String {
        c.display()
    }

    const TAG: &str = "hwameistor.io/managed";

    #[test]
    fn report_commands() {
        let l = Lvm::default();
        assert_eq!(
            line(&l.pvs()),
            format!("pvs --reportformat json --units b --nosuffix -o {PV_FIELDS}")
        );
        assert_eq!(
            line(&l.vgs(Some("LocalStorage_PoolHDD"))),
            format!(
                "vgs --reportformat json --units b --nosuffix -o {VG_FIELDS} LocalStorage_PoolHDD"
            )
        );
        assert_eq!(
            line(&l.lvs(None)),
            format!("lvs --reportformat json --units b --nosuffix -o {LV_FIELDS}")
        );
        assert_eq!(
            line(&l.lvs_one("LocalStorage_PoolHDD", "pvc-1")),
            format!(
                "lvs --reportformat json --units b --nosuffix -o {LV_FIELDS} \
                 LocalStorage_PoolHDD/pvc-1"
            )
        );
    }

    #[test]
    fn pool_commands() {
        let l = Lvm::default();
        let (a, b) = (Path::new("/dev/sdb"), Path::new("/dev/sdc"));
        assert_eq!(
            line(&l.vg_create("LocalStorage_PoolHDD", &[a, b], TAG)),
            "vgcreate -y --addtag hwameistor.io/managed LocalStorage_PoolHDD /dev/sdb /dev/sdc"
        );
        assert_eq!(
            line(&l.vg_extend("LocalStorage_PoolHDD", &[b])),
            "vgextend -y LocalStorage_PoolHDD /dev/sdc"
        );
        assert_eq!(line(&l.pv_resize(a)), "pvresize -y /dev/sdb");
    }

    #[test]
    fn volume_commands() {
        let l = Lvm::new(Duration::from_secs(5));
        let c = l.lv_create("LocalStorage_PoolHDD", "pvc-1", 1073741824, 1, TAG);
        assert_eq!(c.get_timeout(), Duration::from_secs(5));
        assert_eq!(
            line(&c),
            "lvcreate -y --addtag hwameistor.io/managed --wipesignatures y --zero y -n pvc-1 \
             -L 1073741824b LocalStorage_PoolHDD"
        );
        assert_eq!(
            line(&l.lv_create("LocalStorage_PoolSSD", "pvc-2", 8388608, 2, TAG)),
            "lvcreate -y --addtag hwameistor.io/managed --wipesignatures y --zero y -n pvc-2 \
             -L 8388608b -i 2 LocalStorage_PoolSSD"
        );
        assert_eq!(
            line(&l.lv_extend("LocalStorage_PoolHDD", "pvc-1", 2147483648)),
            "lvextend -y -L 2147483648b LocalStorage_PoolHDD/pvc-1"
        );
        assert_eq!(
            line(&l.lv_remove("LocalStorage_PoolHDD", "pvc-1")),
            "lvremove -y LocalStorage_PoolHDD/pvc-1"
        );
        assert_eq!(
            line(&l.lv_remove_many("LocalStorage_PoolHDD", &["pvc-1", "pvc-2"])),
            "lvremove -y LocalStorage_PoolHDD/pvc-1 LocalStorage_PoolHDD/pvc-2"
        );
        assert_eq!(
            line(&l.lv_change_active("LocalStorage_PoolHDD", "pvc-1", true)),
            "lvchange -ay LocalStorage_PoolHDD/pvc-1"
        );
        assert_eq!(
            line(&l.lv_change_active("LocalStorage_PoolHDD", "pvc-1", false)),
            "lvchange -an LocalStorage_PoolHDD/pvc-1"
        );
        assert_eq!(
            line(&l.lv_snapshot("LocalStorage_PoolHDD", "pvc-1", "snap-1", 4194304, TAG)),
            "lvcreate -y --addtag hwameistor.io/managed -s -n snap-1 -L 4194304b -p r \
             LocalStorage_PoolHDD/pvc-1"
        );
        assert_eq!(
            line(&l.lv_merge("LocalStorage_PoolHDD", "snap-1")),
            "lvconvert -y --merge LocalStorage_PoolHDD/snap-1"
        );
    }

    #[test]
    fn thin_commands() {
        let l = Lvm::default();
        let vg = "LocalStorage_PoolHDD";
        let pool = "LocalStorage_ThinPool";
        assert_eq!(
            line(&l.thin_pool_create(
                vg,
                pool,
                512 * 1048576,
                8 * 1048576,
                &[TAG, "hwameistor.io/overprovision=2"]
            )),
            "lvcreate -y --addtag hwameistor.io/managed --addtag hwameistor.io/overprovision=2 \
             --type thin-pool -Z y -n LocalStorage_ThinPool -L 536870912b \
             --poolmetadatasize 8388608b LocalStorage_PoolHDD"
        );
        assert_eq!(
            line(&l.thin_pool_create(vg, pool, 4194304, 0, &[TAG])),
            "lvcreate -y --addtag hwameistor.io/managed --type thin-pool -Z y \
             -n LocalStorage_ThinPool -L 4194304b LocalStorage_PoolHDD",
            "metadata size 0: lvm chooses"
        );
        assert_eq!(
            line(&l.thin_pool_extend_metadata(vg, pool, 16777216)),
            "lvextend -y --poolmetadatasize 16777216b LocalStorage_PoolHDD/LocalStorage_ThinPool"
        );
        assert_eq!(
            line(&l.lv_retag(vg, pool, Some("a=1"), "a=2")),
            "lvchange --deltag a=1 --addtag a=2 LocalStorage_PoolHDD/LocalStorage_ThinPool"
        );
        assert_eq!(
            line(&l.lv_retag(vg, pool, None, "a=2")),
            "lvchange --addtag a=2 LocalStorage_PoolHDD/LocalStorage_ThinPool"
        );
        assert_eq!(
            line(&l.thin_create(vg, pool, "pvc-t", 1073741824, TAG)),
            "lvcreate -y --addtag hwameistor.io/managed --type thin -V 1073741824b \
             --thinpool LocalStorage_ThinPool -n pvc-t LocalStorage_PoolHDD"
        );
        assert_eq!(
            line(&l.thin_snapshot(vg, "pvc-t", "snap-t", TAG)),
            "lvcreate -y --addtag hwameistor.io/managed -s -k n -p r -n snap-t \
             LocalStorage_PoolHDD/pvc-t"
        );
    }
}
