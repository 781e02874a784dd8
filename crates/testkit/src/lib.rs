//! Shared scaffolding of the HwameiStor tests (dev-dependency only, never shipped).
//!
//! The tier-1 tests (root on the host: loop devices, mkfs, mount, cgroups) and the tier-2
//! tests (inside the qemu guest: LVM, dm-crypt) all need the same plumbing: a directory
//! whose mounts and loop devices are released even when the test panics, "disks" made of
//! sparse files on loop devices, polling until an object reaches a state, writing data and
//! reading it back, and a running `hwameistor standalone` server. This crate holds that
//! plumbing once.
//!
//! # Usage
//!
//! Add it as a dev-dependency (`hwameistor-testkit.workspace = true` under
//! `[dev-dependencies]`), then in a test:
//!
//! ```no_run
//! # async fn t() -> anyhow::Result<()> {
//! use hwameistor_testkit::{Sandbox, block, data, wait_for};
//!
//! // /tmp/hwameistor-t1-mytopic-<pid>; on drop: unmount, detach loops, remove.
//! let sb = Sandbox::new("mytopic")?;
//! let disk = sb.loop_disk("d1", 1 << 30).await?; // disks/d1.img on a loop device
//! assert_eq!(block::blockdev_size(&disk.dev).await?, 1 << 30);
//! data::write_read_at(&disk.dev, 0, &data::pattern(1 << 20, 7))?;
//! let n = wait_for(30, "something", || async { Some(1) }).await; // panics on timeout
//! # let _ = n; Ok(()) }
//! ```
//!
//! - [`Sandbox`]: a test directory with Drop cleanup ([`block::release_under`]: unmount
//!   everything below it deepest first, detach every loop device backed by a file below it),
//!   loop-backed disks ([`Sandbox::loop_disk`], [`LoopDisk::attach`]) and extra directories
//!   to remove (cgroups); [`ReleaseOnDrop`] does the same for a directory it does not own.
//! - [`wait_for`] (panics after a deadline) and [`wait_timed`] (returns an error and the
//!   elapsed time, for latency figures).
//! - [`block`]: `blockdev --getsize64`, loop attach/grow/detach, mount table lookups.
//! - [`data`]: deterministic patterns, write-and-read-back checks, direct-IO `dd` copies,
//!   digests.
//! - [`cgroup`]: run a child inside a test cgroup (IO throttling measurements), find this
//!   process's own cgroup.
//! - [`host`]: run a command to completion from synchronous code (Drop guards), capability
//!   checks.
//! - [`tier2`]: the qemu guest (assert we are inside it), LVM command lines, an LVM/LUKS
//!   cleanup guard.
//! - [`server`]: the `hwameistor standalone --data-dir DIR` fixture (start, wait for
//!   `server.json`, stop with a signal, release loop devices under DIR).
//!
//! Every host command goes through `hwameistor_exec::TokioRunner`; the only exception is the
//! long-running server child in [`server`], which the runner (run-to-completion) cannot hold.
//! Being test-only, the crate reports errors as `anyhow::Error`, the tests' own error type.

pub mod block;
pub mod cgroup;
pub mod data;
pub mod host;
mod sandbox;
pub mod server;
pub mod tier2;
mod wait;

pub use sandbox::{LoopDisk, ReleaseOnDrop, Sandbox, release_blocking};
pub use wait::{wait_for, wait_timed};

/// One mebibyte.
pub const MI: u64 = 1 << 20;
/// One gibibyte.
pub const GI: u64 = 1 << 30;
