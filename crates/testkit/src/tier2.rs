//! Tier 2 (inside the qemu guest of `tests/vm`): the guest description, LVM command lines,
//! and a cleanup guard for volume groups, PVs and dm-crypt mappings.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Result;
use hwameistor_exec::Cmd;
use hwameistor_vmtests::Guest;

use crate::Sandbox;
use crate::host::run_blocking;

/// How long one command may run in the guest (tools are slow under TCG).
pub const TIMEOUT: Duration = Duration::from_secs(300);

/// The guest description; fails the test loudly outside the tier-2 guest (`VM_GUEST=1`).
pub fn guest() -> Guest {
    assert_eq!(
        std::env::var("VM_GUEST").as_deref(),
        Ok("1"),
        "tier-2 test outside the qemu guest: run it via tests/vm/run-tier2.sh"
    );
    Guest::from_env().expect("tier-2 guest environment")
}

/// `argv` as a command with the tier-2 timeout and `LVM_SUPPRESS_FD_WARNINGS=1`.
pub fn lvm_cmd(argv: &[&str]) -> Cmd {
    Cmd::new(argv[0])
        .args(argv[1..].iter().copied())
        .timeout(TIMEOUT)
        .env("LVM_SUPPRESS_FD_WARNINGS", "1")
}

/// The guest has no dmeventd: tell LVM not to monitor (snapshots would try to).
pub fn lvm_no_monitoring() -> Result<()> {
    std::fs::create_dir_all("/etc/lvm")?;
    std::fs::write(
        "/etc/lvm/lvmlocal.conf",
        "activation {\n  monitoring = 0\n}\n",
    )?;
    Ok(())
}

/// On drop, in this order: release the sandbox (unmount, detach loops, remove its
/// directory), close the dm-crypt mappings, remove the volume groups (`vgremove -ff`), then
/// `pvremove -ff` and `wipefs -a` every disk. Best effort, also when the test panics.
#[derive(Debug, Default)]
pub struct LvmCleanup {
    sandbox: Option<Sandbox>,
    mappings: Vec<String>,
    vgs: Vec<String>,
    disks: Vec<PathBuf>,
}

impl LvmCleanup {
    /// A guard over nothing yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// Release this sandbox first.
    pub fn sandbox(mut self, sb: Sandbox) -> Self {
        self.sandbox = Some(sb);
        self
    }

    /// Close the dm-crypt mapping `name` (`cryptsetup close`).
    pub fn mapping(mut self, name: impl Into<String>) -> Self {
        self.mappings.push(name.into());
        self
    }

    /// Remove the volume group `vg`.
    pub fn vg(mut self, vg: impl Into<String>) -> Self {
        self.vgs.push(vg.into());
        self
    }

    /// Wipe these disks.
    pub fn disks<I, P>(mut self, disks: I) -> Self
    where
        I: IntoIterator<Item = P>,
        P: Into<PathBuf>,
    {
        self.disks.extend(disks.into_iter().map(Into::into));
        self
    }

    /// The sandbox, if one was given.
    pub fn sandbox_ref(&self) -> Option<&Sandbox> {
        self.sandbox.as_ref()
    }
}

impl Drop for LvmCleanup {
    fn drop(&mut self) {
        drop(self.sandbox.take());
        for m in &self.mappings {
            let _ = run_blocking(lvm_cmd(&["cryptsetup", "close", m]));
        }
        for vg in &self.vgs {
            let _ = run_blocking(lvm_cmd(&["vgremove", "-ff", "-y", vg]));
        }
        for d in &self.disks {
            let d = d.to_string_lossy();
            let _ = run_blocking(lvm_cmd(&["pvremove", "-ff", "-y", &d]));
            let _ = run_blocking(lvm_cmd(&["wipefs", "-a", &d]));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lvm_cmd_carries_timeout_and_env() {
        let c = lvm_cmd(&["vgs", "--noheadings"]);
        assert_eq!(c.argv(), ["vgs", "--noheadings"]);
        assert_eq!(c.get_timeout(), TIMEOUT);
    }
}
