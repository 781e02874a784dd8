//! Loop devices: attach a file with direct IO, find the loop devices of a file, refresh the
//! capacity after the file grew, detach.
//!
//! Finding the loop devices of a file reads sysfs ([`scan`]: `/sys/block/loop*/loop/`), which
//! costs no process; `losetup -l` ([`list`]) reports the same and is kept as an independent
//! view for tests. sysfs names the backing file by path only (no inode), as the kernel resolves
//! it now: a renamed file shows its new path, a deleted one ends in ` (deleted)` and so matches
//! no file of ours.

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use hwameistor_exec::{Cmd, Runner};
use serde::Deserialize;

use crate::error::{Context, Error, Result};

/// One attached loop device as `losetup -J -l` reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoopDevice {
    /// `/dev/loopN`
    pub name: PathBuf,
    /// Backing file as the kernel remembers it (may end in ` (deleted)`).
    pub back_file: String,
    /// Direct IO enabled.
    pub dio: bool,
    /// Inode and device number (major, minor) of the backing file, when reported.
    pub back_ino: Option<u64>,
    pub back_dev: Option<(u64, u64)>,
}

/// Columns we ask `losetup -l` for.
pub const LOSETUP_COLUMNS: &str = "NAME,BACK-FILE,DIO,BACK-INO,BACK-MAJ:MIN";

#[derive(Deserialize)]
struct LosetupOut {
    #[serde(default)]
    loopdevices: Vec<RawLoop>,
}

#[derive(Deserialize)]
struct RawLoop {
    name: String,
    #[serde(rename = "back-file", default)]
    back_file: Option<String>,
    #[serde(default)]
    dio: serde_json::Value,
    #[serde(rename = "back-ino", default)]
    back_ino: serde_json::Value,
    #[serde(rename = "back-maj:min", default)]
    back_majmin: Option<String>,
}

fn json_bool(v: &serde_json::Value) -> bool {
    match v {
        serde_json::Value::Bool(b) => *b,
        serde_json::Value::Number(n) => n.as_u64() == Some(1),
        serde_json::Value::String(s) => s.trim() == "1" || s.trim() == "true",
        _ => false,
    }
}

fn json_u64(v: &serde_json::Value) -> Option<u64> {
    match v {
        serde_json::Value::Number(n) => n.as_u64(),
        serde_json::Value::String(s) => s.trim().parse().ok(),
        _ => None,
    }
}

fn majmin(s: &str) -> Option<(u64, u64)> {
    let (a, b) = s.trim().split_once(':')?;
    Some((a.trim().parse().ok()?, b.trim().parse().ok()?))
}

/// Parse `losetup -J -l -O <LOSETUP_COLUMNS>` output (empty output = no loop devices).
pub fn parse_losetup(json: &str) -> std::result::Result<Vec<LoopDevice>, String> {
    if json.trim().is_empty() {
        return Ok(Vec::new());
    }
    let out: LosetupOut = serde_json::from_str(json).map_err(|e| e.to_string())?;
    Ok(out
        .loopdevices
        .into_iter()
        .map(|r| LoopDevice {
            name: PathBuf::from(r.name),
            back_file: r.back_file.unwrap_or_default(),
            dio: json_bool(&r.dio),
            back_ino: json_u64(&r.back_ino),
            back_dev: r.back_majmin.as_deref().and_then(majmin),
        })
        .collect())
}

/// The `losetup` commands we run.
#[derive(Debug, Clone)]
pub struct Losetup {
    pub timeout: Duration,
}

impl Losetup {
    /// `losetup -J -l -O NAME,BACK-FILE,DIO,BACK-INO,BACK-MAJ:MIN`
    pub fn list(&self) -> Cmd {
        Cmd::new("losetup")
            .args(["-J", "-l", "-O", LOSETUP_COLUMNS])
            .timeout(self.timeout)
    }

    /// `losetup --direct-io=on --show -f <file>`: attach, print the device.
    pub fn attach(&self, file: &Path) -> Cmd {
        Cmd::new("losetup")
            .args(["--direct-io=on", "--show", "-f"])
            .arg(file.to_string_lossy())
            .timeout(self.timeout)
    }

    /// `losetup --direct-io=on <dev>`: switch an attached device to direct IO.
    pub fn set_dio(&self, dev: &Path) -> Cmd {
        Cmd::new("losetup")
            .arg("--direct-io=on")
            .arg(dev.to_string_lossy())
            .timeout(self.timeout)
    }

    /// `losetup -c <dev>`: re-read the backing file's size.
    pub fn refresh(&self, dev: &Path) -> Cmd {
        Cmd::new("losetup")
            .arg("-c")
            .arg(dev.to_string_lossy())
            .timeout(self.timeout)
    }

    /// `losetup -d <dev>`
    pub fn detach(&self, dev: &Path) -> Cmd {
        Cmd::new("losetup")
            .arg("-d")
            .arg(dev.to_string_lossy())
            .timeout(self.timeout)
    }
}

/// Identity of a file for matching against loop devices: path, inode, device number.
#[derive(Debug, Clone)]
pub struct FileId {
    pub path: PathBuf,
    pub ino: u64,
    pub dev: (u64, u64),
}

impl FileId {
    pub fn of(path: &Path) -> std::io::Result<FileId> {
        let md = std::fs::metadata(path)?;
        let dev = md.dev();
        Ok(FileId {
            path: std::fs::canonicalize(path)?,
            ino: md.ino(),
            dev: (nix::sys::stat::major(dev), nix::sys::stat::minor(dev)),
        })
    }

    /// True if `l` is backed by this file: by inode and device number when losetup reports
    /// them, else by path.
    pub fn backs(&self, l: &LoopDevice) -> bool {
        match (l.back_ino, l.back_dev) {
            (Some(ino), Some(dev)) => ino == self.ino && dev == self.dev,
            _ => Path::new(&l.back_file) == self.path,
        }
    }
}

/// The attached loop devices of the host, from sysfs under `sys` (normally `/sys`): every
/// `block/loopN` with a `loop/backing_file`. Devices that vanish while being read are skipped.
pub fn scan_at(sys: &Path) -> Vec<LoopDevice> {
    let Ok(dir) = std::fs::read_dir(sys.join("block")) else {
        return Vec::new();
    };
    let mut out: Vec<LoopDevice> = dir
        .flatten()
        .filter_map(|e| read_at(sys, &e.file_name().into_string().ok()?, None))
        .collect();
    out.sort_by(|a, b| a.name.cmp(&b.name));
    out
}

/// [`scan_at`] of `/sys`.
pub fn scan() -> Vec<LoopDevice> {
    scan_at(Path::new("/sys"))
}

/// The loop devices of [`scan_at`] backed by `file` (a canonical path, as sysfs shows it),
/// reading one attribute of every other device instead of two.
pub fn scan_backing_at(sys: &Path, file: &Path) -> Vec<LoopDevice> {
    let Ok(dir) = std::fs::read_dir(sys.join("block")) else {
        return Vec::new();
    };
    let mut out: Vec<LoopDevice> = dir
        .flatten()
        .filter_map(|e| read_at(sys, &e.file_name().into_string().ok()?, Some(file)))
        .collect();
    out.sort_by(|a, b| a.name.cmp(&b.name));
    out
}

/// [`scan_backing_at`] of `/sys`.
pub fn scan_backing(file: &Path) -> Vec<LoopDevice> {
    scan_backing_at(Path::new("/sys"), file)
}

/// The loop device `/dev/<name>` from sysfs under `sys`, if `name` is a loop device with a
/// backing file (and that file is `want`, if given).
fn read_at(sys: &Path, name: &str, want: Option<&Path>) -> Option<LoopDevice> {
    let n = name.strip_prefix("loop")?;
    if n.is_empty() || !n.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let attrs = sys.join("block").join(name).join("loop");
    let back = std::fs::read_to_string(attrs.join("backing_file")).ok()?;
    let back = back.trim_end_matches('\n');
    if back.is_empty() || want.is_some_and(|w| Path::new(back) != w) {
        return None;
    }
    let dio = std::fs::read_to_string(attrs.join("dio"))
        .map(|d| d.trim() == "1")
        .unwrap_or(false);
    Some(LoopDevice {
        name: PathBuf::from("/dev").join(name),
        back_file: back.to_owned(),
        dio,
        back_ino: None,
        back_dev: None,
    })
}

/// One device of [`scan_at`]: `dev` (a `/dev/loopN` path) if it is an attached loop device.
/// Two sysfs reads instead of two per loop device of the host.
pub fn device_at(sys: &Path, dev: &Path) -> Option<LoopDevice> {
    if dev.parent() != Some(Path::new("/dev")) {
        return None;
    }
    read_at(sys, dev.file_name()?.to_str()?, None)
}

/// [`device_at`] of `/sys`.
pub fn device(dev: &Path) -> Option<LoopDevice> {
    device_at(Path::new("/sys"), dev)
}

/// All loop devices of the host, as `losetup -l` reports them.
pub async fn list(runner: &dyn Runner, l: &Losetup, op: &'static str) -> Result<Vec<LoopDevice>> {
    let out = runner
        .run(&l.list())
        .await
        .map_err(|e| Error::command(op, Context::default(), e))?;
    parse_losetup(&out.stdout).map_err(|m| Error::Parse {
        op,
        ctx: Context::default(),
        message: format!("output of losetup: {m}"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_losetup_json() {
        // util-linux 2.38
        let json = r#"{
   "loopdevices": [
      {
         "name": "/dev/loop0",
         "back-file": "/var/lib/hwameistor/pools/LocalStorage_PoolHDD/u1/volumes/pvc-1.img",
         "dio": true,
         "back-ino": 131,
         "back-maj:min": "     254:0  "
      },{
         "name": "/dev/loop1",
         "back-file": "/tmp/x.img (deleted)",
         "dio": false,
         "back-ino": "99",
         "back-maj:min": "7:1"
      }
   ]
}"#;
        let l = parse_losetup(json).unwrap();
        assert_eq!(l.len(), 2);
        assert_eq!(l[0].name, PathBuf::from("/dev/loop0"));
        assert!(l[0].dio);
        assert_eq!(l[0].back_ino, Some(131));
        assert_eq!(l[0].back_dev, Some((254, 0)));
        assert!(!l[1].dio);
        assert_eq!(l[1].back_ino, Some(99));
        assert_eq!(l[1].back_dev, Some((7, 1)));
        assert!(parse_losetup("").unwrap().is_empty());
        assert!(parse_losetup("[").is_err());

        let id = FileId {
            path: PathBuf::from("/tmp/x.img"),
            ino: 99,
            dev: (7, 1),
        };
        assert!(id.backs(&l[1]));
        assert!(!id.backs(&l[0]));
    }

    #[test]
    fn scans_sysfs() {
        let sys = tempfile::tempdir().unwrap();
        let mk = |name: &str, back: Option<&str>, dio: &str| {
            let d = sys.path().join("block").join(name);
            std::fs::create_dir_all(d.join("loop")).unwrap();
            if let Some(b) = back {
                std::fs::write(d.join("loop/backing_file"), format!("{b}\n")).unwrap();
                std::fs::write(d.join("loop/dio"), format!("{dio}\n")).unwrap();
            }
        };
        mk("loop3", Some("/pool/volumes/a b.img"), "1");
        mk("loop10", Some("/tmp/x.img (deleted)"), "0");
        mk("loop4", None, "0"); // detached: no loop/backing_file
        std::fs::create_dir_all(sys.path().join("block/sda")).unwrap();
        std::fs::create_dir_all(sys.path().join("block/loopx/loop")).unwrap();
        let l = scan_at(sys.path());
        let names: Vec<_> = l.iter().map(|d| d.name.display().to_string()).collect();
        assert_eq!(names, ["/dev/loop10", "/dev/loop3"]);
        assert_eq!(l[1].back_file, "/pool/volumes/a b.img");
        assert!(l[1].dio);
        assert!(!l[0].dio);
        let id = FileId {
            path: PathBuf::from("/pool/volumes/a b.img"),
            ino: 1,
            dev: (0, 1),
        };
        assert!(id.backs(&l[1]));
        let gone = FileId {
            path: PathBuf::from("/tmp/x.img"),
            ino: 1,
            dev: (0, 1),
        };
        assert!(!gone.backs(&l[0]), "a deleted backing file is nobody's");
        assert!(scan_at(&sys.path().join("nothing")).is_empty());
        // one device: the same answer as the scan, nothing for anything else
        assert_eq!(
            device_at(sys.path(), Path::new("/dev/loop3")).as_ref(),
            Some(&l[1])
        );
        for other in [
            "/dev/loop4",
            "/dev/sda",
            "/dev/loopx",
            "/tmp/loop3",
            "loop3",
        ] {
            assert!(device_at(sys.path(), Path::new(other)).is_none(), "{other}");
        }
        // the devices of one file
        mk("loop7", Some("/pool/volumes/a b.img"), "0");
        let of_a: Vec<_> = scan_backing_at(sys.path(), Path::new("/pool/volumes/a b.img"))
            .into_iter()
            .map(|d| (d.name.display().to_string(), d.dio))
            .collect();
        assert_eq!(
            of_a,
            [
                ("/dev/loop3".to_owned(), true),
                ("/dev/loop7".to_owned(), false)
            ]
        );
        assert!(scan_backing_at(sys.path(), Path::new("/pool/volumes/a")).is_empty());
    }

    #[test]
    fn commands() {
        let l = Losetup {
            timeout: Duration::from_secs(10),
        };
        assert_eq!(
            l.list().display(),
            "losetup -J -l -O NAME,BACK-FILE,DIO,BACK-INO,BACK-MAJ:MIN"
        );
        assert_eq!(
            l.attach(Path::new("/p/v.img")).display(),
            "losetup --direct-io=on --show -f /p/v.img"
        );
        assert_eq!(
            l.refresh(Path::new("/dev/loop3")).display(),
            "losetup -c /dev/loop3"
        );
        assert_eq!(
            l.detach(Path::new("/dev/loop3")).display(),
            "losetup -d /dev/loop3"
        );
        assert_eq!(
            l.set_dio(Path::new("/dev/loop3")).display(),
            "losetup --direct-io=on /dev/loop3"
        );
    }
}
