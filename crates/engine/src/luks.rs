//! LUKS2 encryption of volumes with `cryptsetup` (L9).
//!
//! An encrypted volume is a LUKS2 container on the volume's device (the LV, or the file
//! engine's loop device); the filesystem lives on the opened mapping
//! `/dev/mapper/<volume>-encrypt` ([`mapping_name`]). The node formats the container once
//! ([`Luks::format`], refusing a device that holds anything else), opens it when the volume is
//! published ([`Luks::open`]) and closes it when it is unpublished ([`Luks::close`]). Snapshots
//! of an encrypted volume copy the ciphertext, so they stay encrypted.
//!
//! The key ([`Secret`]) only ever reaches `cryptsetup` on its stdin (`--key-file=-`): never
//! argv, never the log (its `Debug` prints `<redacted>`), never a file of ours. A key read
//! from a file ([`Secret::from_file`]) must be mode 0600 or stricter. Key derivation is
//! cryptsetup's default (argon2id); [`Pbkdf::Pbkdf2`] with a fixed iteration count exists for
//! tests that must not spend seconds per open.

use std::fmt;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use hwameistor_core::names;
use hwameistor_exec::{Cmd, SharedRunner};

use crate::error::{Context, Error, Result};
use crate::fs;

/// Suffix of the device-mapper name of an opened volume (as in the original).
pub const MAPPING_SUFFIX: &str = "-encrypt";

/// Device-mapper name of the opened volume: `<volume>-encrypt`.
pub fn mapping_name(volume: &str) -> String {
    format!("{volume}{MAPPING_SUFFIX}")
}

/// Operation name of [`Luks::open`] in errors.
pub const OP_OPEN: &str = "luks open";

const WRONG_KEY: &str = "the key opens no key slot of this LUKS container (wrong key)";

/// Whether `err` says the key did not open the container (as opposed to a device or tool
/// failure).
pub fn is_wrong_key(err: &Error) -> bool {
    matches!(err, Error::InvalidArgument { op, message, .. } if *op == OP_OPEN && message == WRONG_KEY)
}

/// Path of an opened mapping.
pub fn mapper_path(name: &str) -> PathBuf {
    PathBuf::from("/dev/mapper").join(name)
}

/// A volume key. Its bytes are overwritten when dropped and never printed.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(Vec<u8>);

impl Secret {
    /// A key from bytes (at least 8).
    pub fn new(bytes: impl Into<Vec<u8>>) -> Result<Self> {
        let b = bytes.into();
        if b.len() < 8 {
            return Err(Error::InvalidArgument {
                op: "luks key",
                ctx: Context::default(),
                message: format!("a key needs at least 8 bytes, got {}", b.len()),
            });
        }
        Ok(Secret(b))
    }

    /// A key from a file that only its owner can read (mode 0600 or stricter), e.g. a
    /// Secret mounted on a tmpfs.
    pub fn from_file(path: &Path) -> Result<Self> {
        const OP: &str = "read luks key";
        let ctx = Context::device(path.display());
        let meta = std::fs::metadata(path).map_err(|e| Error::io(OP, ctx.clone(), path, e))?;
        let mode = meta.permissions().mode() & 0o777;
        if mode & 0o077 != 0 {
            return Err(Error::InvalidArgument {
                op: OP,
                ctx,
                message: format!("key file mode is {mode:o}; it must be 0600 or stricter"),
            });
        }
        let b = std::fs::read(path).map_err(|e| Error::io(OP, ctx, path, e))?;
        Secret::new(b)
    }

    fn bytes(&self) -> &[u8] {
        &self.0
    }

    /// The key bytes, for writing them to a private (0600) key file. Never log them.
    pub fn expose(&self) -> &[u8] {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(<redacted>)")
    }
}

impl Drop for Secret {
    fn drop(&mut self) {
        for b in self.0.iter_mut() {
            *b = 0;
        }
    }
}

/// Key derivation of new containers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Pbkdf {
    /// cryptsetup's default (argon2id, benchmarked).
    #[default]
    Default,
    /// PBKDF2 with a fixed iteration count: fast and weak, for tests only.
    Pbkdf2 { iterations: u32 },
}

/// `cryptsetup` through the Runner.
#[derive(Debug, Clone)]
pub struct Luks {
    runner: SharedRunner,
    pub pbkdf: Pbkdf,
    pub timeout: Duration,
}

fn dev_ctx(dev: &Path) -> Context {
    Context::device(dev.display())
}

impl Luks {
    pub fn new(runner: SharedRunner) -> Self {
        Luks {
            runner,
            pbkdf: Pbkdf::Default,
            timeout: Duration::from_secs(120),
        }
    }

    /// The `luksFormat` command for `dev` (the key comes on stdin).
    pub fn format_cmd(&self, dev: &Path, key: &Secret) -> Cmd {
        let mut c = Cmd::new("cryptsetup")
            .args(["-q", "luksFormat", "--type", "luks2", "--key-file=-"])
            .timeout(self.timeout);
        if let Pbkdf::Pbkdf2 { iterations } = self.pbkdf {
            c = c
                .args(["--pbkdf", "pbkdf2", "--pbkdf-force-iterations"])
                .arg(iterations.to_string());
        }
        c.arg(dev.to_string_lossy()).stdin(key.bytes().to_vec())
    }

    /// Whether `dev` holds a LUKS container (`cryptsetup isLuks`: 0 yes, 1 no).
    pub async fn is_luks(&self, dev: &Path) -> Result<bool> {
        const OP: &str = "luks probe";
        let c = Cmd::new("cryptsetup")
            .arg("isLuks")
            .arg(dev.to_string_lossy())
            .timeout(self.timeout);
        let out = self
            .runner
            .output(&c)
            .await
            .map_err(|e| Error::command(OP, dev_ctx(dev), e))?;
        match out.code {
            Some(0) => Ok(true),
            Some(1) => Ok(false),
            _ => Err(Error::command(
                OP,
                dev_ctx(dev),
                hwameistor_exec::Error::Failed {
                    command: c.display(),
                    code: out.code,
                    stdout: out.stdout,
                    stderr: out.stderr,
                },
            )),
        }
    }

    /// Make `dev` a LUKS2 container with `key`. Idempotent: a LUKS device is left alone; a
    /// device holding anything else (a filesystem, a partition table) is refused.
    pub async fn format(&self, dev: &Path, key: &Secret) -> Result<()> {
        const OP: &str = "luks format";
        if self.is_luks(dev).await? {
            return Ok(());
        }
        let p = fs::probe(self.runner.as_ref(), dev).await?;
        if !p.is_blank() {
            return Err(Error::Conflict {
                op: OP,
                ctx: dev_ctx(dev),
                message: format!(
                    "the device holds {}; refusing to encrypt over it",
                    p.fs_type.or(p.pt_type).unwrap_or_default()
                ),
            });
        }
        self.runner
            .run(&self.format_cmd(dev, key))
            .await
            .map_err(|e| Error::command(OP, dev_ctx(dev), e))?;
        Ok(())
    }

    /// The `open` command mapping `dev` as `name` (the key comes on stdin).
    pub fn open_cmd(&self, dev: &Path, name: &str, key: &Secret) -> Cmd {
        Cmd::new("cryptsetup")
            .args([
                "open",
                "--type",
                "luks2",
                "--allow-discards",
                "--key-file=-",
            ])
            .arg(dev.to_string_lossy())
            .arg(name)
            .stdin(key.bytes().to_vec())
            .timeout(self.timeout)
    }

    /// Open the container on `dev` as `/dev/mapper/<name>`; an existing mapping is kept.
    /// A key that opens no key slot is [`Error::InvalidArgument`] with op
    /// [`OP_OPEN`] (see [`is_wrong_key`]); nothing on the device is touched.
    pub async fn open(&self, dev: &Path, name: &str, key: &Secret) -> Result<PathBuf> {
        names::validate("mapping", name)?;
        let path = mapper_path(name);
        if path.exists() {
            return Ok(path);
        }
        let out = self
            .runner
            .output(&self.open_cmd(dev, name, key))
            .await
            .map_err(|e| Error::command(OP_OPEN, dev_ctx(dev), e))?;
        match out.code {
            Some(0) => Ok(path),
            // cryptsetup's exit code 2: "No key available with this passphrase".
            Some(2) => Err(Error::InvalidArgument {
                op: OP_OPEN,
                ctx: dev_ctx(dev),
                message: WRONG_KEY.to_string(),
            }),
            code => Err(Error::command(
                OP_OPEN,
                dev_ctx(dev),
                hwameistor_exec::Error::Failed {
                    command: self.open_cmd(dev, name, key).display(),
                    code,
                    stdout: out.stdout,
                    stderr: out.stderr,
                },
            )),
        }
    }

    /// The `resize` command growing mapping `name` to its device (the key comes on stdin:
    /// LUKS2 keeps the volume key in the kernel keyring, so resizing asks for it).
    pub fn resize_cmd(&self, name: &str, key: &Secret) -> Cmd {
        Cmd::new("cryptsetup")
            .args(["resize", "--key-file=-"])
            .arg(name)
            .stdin(key.bytes().to_vec())
            .timeout(self.timeout)
    }

    /// Grow the open mapping `name` to the current size of its device (after the LV grew).
    pub async fn resize(&self, name: &str, key: &Secret) -> Result<()> {
        const OP: &str = "luks resize";
        names::validate("mapping", name)?;
        let path = mapper_path(name);
        self.runner
            .run(&self.resize_cmd(name, key))
            .await
            .map_err(|e| Error::command(OP, Context::device(path.display()), e))?;
        Ok(())
    }

    /// Close the mapping `name`; a missing mapping is success.
    pub async fn close(&self, name: &str) -> Result<()> {
        const OP: &str = "luks close";
        names::validate("mapping", name)?;
        let path = mapper_path(name);
        if !path.exists() {
            return Ok(());
        }
        let c = Cmd::new("cryptsetup")
            .arg("close")
            .arg(name)
            .timeout(self.timeout);
        self.runner
            .run(&c)
            .await
            .map_err(|e| Error::command(OP, Context::device(path.display()), e))?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use hwameistor_exec::{Output, RecordingRunner};
    use std::sync::Arc;

    #[test]
    fn key_never_in_argv_or_debug() {
        let key = Secret::new(b"correct horse battery".to_vec()).unwrap();
        let l = Luks {
            runner: Arc::new(RecordingRunner::new()),
            pbkdf: Pbkdf::Pbkdf2 { iterations: 1000 },
            timeout: Duration::from_secs(5),
        };
        let c = l.format_cmd(Path::new("/dev/vg/lv"), &key);
        let argv = c.argv().join(" ");
        assert!(!argv.contains("horse"), "{argv}");
        assert!(argv.contains("--key-file=-"));
        assert!(argv.contains("--pbkdf pbkdf2 --pbkdf-force-iterations 1000"));
        assert_eq!(format!("{key:?}"), "Secret(<redacted>)");
        assert!(Secret::new(b"short".to_vec()).is_err());
        assert_eq!(mapping_name("pvc-1"), "pvc-1-encrypt");
    }

    #[test]
    fn open_and_resize_take_the_key_on_stdin_only() {
        let key = Secret::new(b"correct horse battery".to_vec()).unwrap();
        let l = Luks::new(Arc::new(RecordingRunner::new()));
        for c in [
            l.open_cmd(Path::new("/dev/vg/lv"), "pvc-1-encrypt", &key),
            l.resize_cmd("pvc-1-encrypt", &key),
            l.format_cmd(Path::new("/dev/vg/lv"), &key),
        ] {
            let argv = c.argv().join(" ");
            assert!(!argv.contains("horse"), "{argv}");
            assert!(argv.contains("--key-file=-"), "{argv}");
            let dbg = format!("{c:?}");
            assert!(!dbg.contains("horse"), "{dbg}");
            assert!(dbg.contains("<21 bytes>"), "stdin carries the key: {dbg}");
        }
        assert_eq!(
            l.open_cmd(Path::new("/dev/vg/lv"), "m", &key).argv(),
            [
                "cryptsetup",
                "open",
                "--type",
                "luks2",
                "--allow-discards",
                "--key-file=-",
                "/dev/vg/lv",
                "m"
            ]
        );
        assert_eq!(
            l.resize_cmd("m", &key).argv(),
            ["cryptsetup", "resize", "--key-file=-", "m"]
        );
    }

    #[tokio::test]
    async fn wrong_key_is_recognised_and_other_failures_are_not() {
        let key = Secret::new(b"0123456789".to_vec()).unwrap();
        let fake = Arc::new(RecordingRunner::new());
        fake.respond_prefix(
            &["cryptsetup", "open"],
            Output::failed(2, "No key available with this passphrase."),
        );
        let l = Luks::new(fake.clone());
        let err = l
            .open(Path::new("/dev/x"), "hwt-no-such-mapping-1", &key)
            .await
            .unwrap_err();
        assert!(is_wrong_key(&err), "{err}");
        assert!(err.to_string().contains("wrong key"), "{err}");
        assert!(!err.to_string().contains("0123456789"), "{err}");

        let fake = Arc::new(RecordingRunner::new());
        fake.respond_prefix(
            &["cryptsetup", "open"],
            Output::failed(4, "Device /dev/x does not exist or access denied."),
        );
        let l = Luks::new(fake.clone());
        let err = l
            .open(Path::new("/dev/x"), "hwt-no-such-mapping-1", &key)
            .await
            .unwrap_err();
        assert!(!is_wrong_key(&err), "{err}");
        assert!(err.to_string().contains("does not exist"), "{err}");
        // Mapping names are validated before they reach argv.
        assert!(
            l.open(Path::new("/dev/x"), "-rf", &key).await.is_err()
                && l.close("../x").await.is_err()
        );
    }

    #[test]
    fn key_file_must_be_private() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("key");
        std::fs::write(&p, b"0123456789abcdef").unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o644)).unwrap();
        assert!(Secret::from_file(&p).is_err());
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o600)).unwrap();
        assert_eq!(
            Secret::from_file(&p).unwrap(),
            Secret::new(b"0123456789abcdef".to_vec()).unwrap()
        );
    }

    #[tokio::test]
    async fn format_refuses_a_device_with_a_filesystem_and_skips_luks() {
        let key = Secret::new(b"0123456789".to_vec()).unwrap();
        let fake = Arc::new(RecordingRunner::new());
        fake.respond_prefix(&["cryptsetup", "isLuks"], Output::failed(1, ""));
        fake.respond_prefix(&["blkid"], Output::ok("TYPE=ext4\n"));
        let l = Luks::new(fake.clone());
        let err = l.format(Path::new("/dev/x"), &key).await.unwrap_err();
        assert!(err.to_string().contains("ext4"), "{err}");

        let fake = Arc::new(RecordingRunner::new());
        fake.respond_prefix(&["cryptsetup", "isLuks"], Output::ok(""));
        let l = Luks::new(fake.clone());
        l.format(Path::new("/dev/x"), &key).await.unwrap();
        assert!(
            !fake
                .calls()
                .iter()
                .any(|c| c.get_args().iter().any(|a| a == "luksFormat"))
        );
    }
}
