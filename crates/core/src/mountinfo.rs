//! The kernel's mount table (`/proc/<pid>/mountinfo`), parsed.
//!
//! Reading this file is how every component learns what is mounted where: it costs a few
//! hundred microseconds, where running `findmnt` costs a process (milliseconds, and much more
//! on a busy node). The text is read by the adapters; this module only parses it.
//!
//! One line (see proc(5)):
//! ```text
//! 36 35 98:0 /mnt1 /mnt2 rw,noatime master:1 - ext3 /dev/root rw,errors=continue
//! (1)(2)(3)   (4)   (5)      (6)      (7)   (8) (9)   (10)         (11)
//! ```
//! (1) mount id, (2) parent id, (3) major:minor of the filesystem, (4) root of the mount
//! inside its filesystem, (5) mount point, (6) per-mount options, (7) optional fields ended by
//! (8) `-`, (9) filesystem type, (10) source, (11) superblock options. Paths escape space,
//! tab, newline and backslash as octal (`\040`).

/// One mount.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MountInfo {
    pub id: u32,
    pub parent: u32,
    /// Device number of the mounted filesystem (`0:N` for virtual filesystems).
    pub major: u32,
    pub minor: u32,
    /// Path inside the filesystem that is mounted (`/` normally; `/loop2` for a bind mount of
    /// the device node `/dev/loop2` from devtmpfs).
    pub root: String,
    pub mount_point: String,
    pub fs_type: String,
    /// What was mounted (`/dev/loop3`, `tmpfs`, `udev`, ...).
    pub source: String,
    /// Per-mount options followed by the superblock options, comma-separated.
    pub options: String,
}

impl MountInfo {
    /// The source as `findmnt` prints it: `source[root]` when a subtree is mounted (a bind
    /// mount of a directory or of a device node), plain `source` otherwise.
    pub fn display_source(&self) -> String {
        if self.root == "/" || self.root.is_empty() {
            self.source.clone()
        } else {
            format!("{}[{}]", self.source, self.root)
        }
    }
}

/// Undo the octal escapes (`\040` for a space) of mountinfo fields.
pub fn unescape(s: &str) -> String {
    if !s.contains('\\') {
        return s.to_owned();
    }
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\'
            && i + 3 < b.len()
            && b[i + 1..i + 4].iter().all(|c| (b'0'..=b'7').contains(c))
        {
            let v = u32::from(b[i + 1] - b'0') * 64
                + u32::from(b[i + 2] - b'0') * 8
                + u32::from(b[i + 3] - b'0');
            // \400 and above are not escapes the kernel writes; keep them as they are
            match u8::try_from(v) {
                Ok(v) => {
                    out.push(v);
                    i += 4;
                }
                Err(_) => {
                    out.push(b[i]);
                    i += 1;
                }
            }
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn parse_dev(s: &str) -> Option<(u32, u32)> {
    let (a, b) = s.split_once(':')?;
    Some((a.parse().ok()?, b.parse().ok()?))
}

/// Parse one line; `None` for a line that is not a mountinfo entry.
pub fn parse_line(line: &str) -> Option<MountInfo> {
    let (head, tail) = line.split_once(" - ")?;
    let mut f = head.split(' ');
    let id = f.next()?.parse().ok()?;
    let parent = f.next()?.parse().ok()?;
    let (major, minor) = parse_dev(f.next()?)?;
    let root = unescape(f.next()?);
    let mount_point = unescape(f.next()?);
    let mount_opts = f.next()?;
    let mut t = tail.split(' ');
    let fs_type = unescape(t.next()?);
    let source = unescape(t.next()?);
    let super_opts = t.next().unwrap_or("");
    // the superblock's own rw/ro is shadowed by the per-mount one, as findmnt shows it
    let extra: Vec<&str> = super_opts
        .split(',')
        .filter(|o| !o.is_empty() && *o != "rw" && *o != "ro")
        .collect();
    let options = if extra.is_empty() {
        mount_opts.to_owned()
    } else {
        format!("{mount_opts},{}", extra.join(","))
    };
    Some(MountInfo {
        id,
        parent,
        major,
        minor,
        root,
        mount_point,
        fs_type,
        source,
        options,
    })
}

/// Parse a whole mountinfo text, in the kernel's order (a later mount on the same mount point
/// hides an earlier one). Malformed lines are skipped.
pub fn parse(text: &str) -> Vec<MountInfo> {
    text.lines().filter_map(parse_line).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const TEXT: &str = "\
22 1 8:1 / / rw,relatime shared:1 - ext4 /dev/sda1 rw,errors=remount-ro
40 22 0:5 /loop3 /var/lib/kubelet/pods/x/volumeDevices/pvc-1 rw,nosuid shared:2 - devtmpfs udev rw,size=4008k,mode=755
41 22 7:4 / /var/lib/hwameistor/pool\\040a rw,relatime - xfs /dev/loop4 rw,attr2,inode64
42 22 0:44 / /run/x rw master:3 shared:9 - tmpfs tmpfs rw
garbage line
";

    #[test]
    fn parses_fields_and_optional_fields() {
        let m = parse(TEXT);
        assert_eq!(m.len(), 4);
        assert_eq!(m[0].mount_point, "/");
        assert_eq!((m[0].major, m[0].minor), (8, 1));
        assert_eq!(m[0].source, "/dev/sda1");
        assert_eq!(m[0].options, "rw,relatime,errors=remount-ro");
        assert_eq!(m[1].id, 40);
        assert_eq!(m[1].parent, 22);
        assert_eq!(m[1].display_source(), "udev[/loop3]");
        assert_eq!(m[2].mount_point, "/var/lib/hwameistor/pool a");
        assert_eq!(m[2].display_source(), "/dev/loop4");
        assert_eq!(m[3].fs_type, "tmpfs");
        assert_eq!(m[3].options, "rw");
    }

    #[test]
    fn unescapes_octal_and_keeps_the_rest() {
        assert_eq!(unescape(r"a\040b\011c\012d\134e"), "a b\tc\nd\\e");
        assert_eq!(unescape(r"plain"), "plain");
        assert_eq!(unescape(r"bad\09"), r"bad\09");
        assert_eq!(unescape(r"end\04"), r"end\04");
        assert_eq!(unescape(r"big\777"), r"big\777");
    }
}
