//! `hwameictl secret set NS/NAME --from-file FILE`: store the key of encrypted volumes for a
//! standalone server (see docs/encryption.md).
//!
//! Local, not REST: the key goes straight into `<data-dir>/secrets/<NS>/<NAME>` (mode 0600,
//! directories 0700) where the standalone node service looks it up, so it never crosses
//! the API or appears in an object. Needs `--data-dir` (or `HWAMEISTOR_DATA_DIR`) and write
//! access to it. In Kubernetes mode create a Secret with data key `key` instead.

use std::path::{Path, PathBuf};

use clap::Subcommand;

use crate::{Error, Io, Result};

/// `hwameictl secret …`
#[derive(Debug, Subcommand)]
pub enum SecretCmd {
    /// Store the key named by an `encryptSecret` reference (`NAMESPACE/NAME`).
    Set {
        /// `NAMESPACE/NAME`, as in the StorageClass parameter `encryptSecret`.
        reference: String,
        /// File holding the key; its exact bytes are the key (at least 8).
        #[arg(long)]
        from_file: PathBuf,
    },
}

/// Run a secret command against the data directory.
pub fn run(data_dir: Option<&Path>, io: &mut Io<'_>, cmd: &SecretCmd) -> Result<()> {
    match cmd {
        SecretCmd::Set {
            reference,
            from_file,
        } => {
            let dir = data_dir.ok_or_else(|| {
                Error::Usage(
                    "secret set writes the standalone key store: pass --data-dir DIR \
                     (the server's --data-dir)"
                        .into(),
                )
            })?;
            let bytes = std::fs::read(from_file)?;
            let path = hwameistor_csi::keys::store_key_file(&dir.join("secrets"), reference, bytes)
                .map_err(|e| Error::Usage(e.to_string()))?;
            writeln!(
                io.out,
                "secret {reference} stored in {} (mode 0600)",
                path.display()
            )?;
            Ok(())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::MetadataExt;

    #[test]
    fn set_writes_a_private_key_file_and_prints_no_key() {
        let dir = tempfile::tempdir().unwrap();
        let src = dir.path().join("k");
        std::fs::write(&src, b"cli-secret-key-bytes").unwrap();
        let (mut out, mut err) = (Vec::new(), Vec::new());
        let mut io = Io {
            out: &mut out,
            err: &mut err,
        };
        let cmd = SecretCmd::Set {
            reference: "ns1/vol-key".into(),
            from_file: src.clone(),
        };
        run(Some(dir.path()), &mut io, &cmd).unwrap();
        let p = dir.path().join("secrets/ns1/vol-key");
        assert_eq!(std::fs::read(&p).unwrap(), b"cli-secret-key-bytes");
        assert_eq!(std::fs::metadata(&p).unwrap().mode() & 0o777, 0o600);
        let printed = String::from_utf8(out).unwrap();
        assert!(printed.contains("ns1/vol-key"), "{printed}");
        assert!(!printed.contains("cli-secret"), "{printed}");

        let mut io = Io {
            out: &mut Vec::new(),
            err: &mut Vec::new(),
        };
        assert!(run(None, &mut io, &cmd).is_err(), "needs --data-dir");
        let bad = SecretCmd::Set {
            reference: "../x".into(),
            from_file: src,
        };
        assert!(run(Some(dir.path()), &mut io, &bad).is_err());
    }
}
