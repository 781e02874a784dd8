//! Writes every CRD of the hwameistor.io API to `deploy/crds/hwameistor.io_<plural>.yaml`.
//!
//! Usage: `cargo run -p hwameistor-api --bin crdgen [-- <output dir>]` (default: the
//! workspace's `deploy/crds`). Files of kinds we define are overwritten; other files in the
//! directory are left alone. Output is deterministic.

use std::path::PathBuf;

use anyhow::Context;

fn main() -> anyhow::Result<()> {
    let out = match std::env::args_os().nth(1) {
        Some(dir) => PathBuf::from(dir),
        None => PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../deploy/crds"),
    };
    std::fs::create_dir_all(&out).with_context(|| format!("creating {}", out.display()))?;
    for (name, yaml) in hwameistor_api::crd_files()? {
        let path = out.join(&name);
        let unchanged = std::fs::read_to_string(&path).is_ok_and(|old| old == yaml);
        if !unchanged {
            std::fs::write(&path, yaml).with_context(|| format!("writing {}", path.display()))?;
            println!("wrote {}", path.display());
        }
    }
    Ok(())
}
