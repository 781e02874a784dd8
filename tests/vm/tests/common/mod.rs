//! Shared helpers of the tier-2 proof tests: run host tools through
//! `hwameistor_exec::TokioRunner` from synchronous tests (so Drop guards can
//! clean up with the same helpers), plus byte-pattern utilities.
#![allow(dead_code)] // each test binary uses a different subset

use std::sync::OnceLock;
use std::time::Duration;

use anyhow::{Context, Result};
use hwameistor_exec::{Cmd, Output, Runner, TokioRunner};
use hwameistor_vmtests::Guest;

/// Tools are slow under TCG emulation: generous default timeout.
pub const TIMEOUT: Duration = Duration::from_secs(180);

fn rt() -> &'static tokio::runtime::Runtime {
    static RT: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    RT.get_or_init(|| {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("tokio runtime")
    })
}

/// The guest description; panics (test failure) outside the tier-2 guest.
pub fn guest() -> Guest {
    assert_eq!(
        std::env::var("VM_GUEST").as_deref(),
        Ok("1"),
        "tier-2 test outside the qemu guest: run it via tests/vm/run-tier2.sh"
    );
    Guest::from_env().expect("tier-2 guest environment")
}

fn cmd(argv: &[&str]) -> Cmd {
    Cmd::new(argv[0])
        .args(argv[1..].iter().copied())
        .timeout(TIMEOUT)
}

/// Runs argv, requires exit 0, returns the output.
pub fn run(argv: &[&str]) -> Result<Output> {
    run_cmd(cmd(argv))
}

/// Runs argv with bytes on stdin, requires exit 0.
pub fn run_stdin(argv: &[&str], stdin: &[u8]) -> Result<Output> {
    run_cmd(cmd(argv).stdin(stdin.to_vec()))
}

/// Runs a prepared command, requires exit 0.
pub fn run_cmd(c: Cmd) -> Result<Output> {
    let line = c.display();
    let out = rt()
        .block_on(TokioRunner.run(&c))
        .with_context(|| format!("running {line}"))?;
    Ok(out)
}

/// Runs argv and returns the output whatever the exit code.
pub fn output(argv: &[&str]) -> Result<Output> {
    let c = cmd(argv);
    let line = c.display();
    rt().block_on(TokioRunner.output(&c))
        .with_context(|| format!("running {line}"))
}

/// Best-effort cleanup command (Drop guards): logs instead of failing.
pub fn cleanup(argv: &[&str]) {
    match output(argv) {
        Ok(o) if o.success() => {}
        Ok(o) => eprintln!(
            "cleanup `{}` exit {:?}: {}",
            argv.join(" "),
            o.code,
            o.stderr.trim()
        ),
        Err(e) => eprintln!("cleanup `{}`: {e:#}", argv.join(" ")),
    }
}

/// A deterministic, non-repeating-looking byte pattern of `len` bytes.
pub fn pattern(seed: u64, len: usize) -> Vec<u8> {
    // xorshift64*: cheap, reproducible on both guests of a pair
    let mut x = seed | 1;
    let mut v = Vec::with_capacity(len + 8);
    while v.len() < len {
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        v.extend_from_slice(&x.wrapping_mul(0x2545_f491_4f6c_dd1d).to_le_bytes());
    }
    v.truncate(len);
    v
}

/// Hex md5 of bytes.
pub fn md5_hex(data: &[u8]) -> String {
    format!("{:x}", md5::compute(data))
}

/// Whether the text `needle` occurs anywhere on the device (or file) `dev`,
/// read from the medium. Uses grep: a byte-by-byte scan in an unoptimised
/// test binary under TCG takes seconds per MiB.
pub fn device_contains(dev: &str, needle: &str) -> Result<bool> {
    anyhow::ensure!(!needle.is_empty() && !needle.contains('\n'), "bad needle");
    run(&["blockdev", "--flushbufs", dev])?;
    let out = output(&["grep", "-a", "-F", "-q", "-e", needle, dev])?;
    match out.code {
        Some(0) => Ok(true),
        Some(1) => Ok(false),
        _ => anyhow::bail!("grep on {dev} failed: {}", out.stderr),
    }
}

/// Reads `len` bytes from the start of a block device, bypassing nothing but
/// asking the kernel to drop its cached pages first (so we read the medium).
pub fn read_device(dev: &str, len: usize) -> Result<Vec<u8>> {
    use std::io::Read;
    run(&["blockdev", "--flushbufs", dev])?;
    let mut f = std::fs::File::open(dev).with_context(|| format!("open {dev}"))?;
    let mut buf = vec![0u8; len];
    f.read_exact(&mut buf)
        .with_context(|| format!("read {len} bytes of {dev}"))?;
    Ok(buf)
}

/// Writes bytes at offset 0 of a block device and fsyncs.
pub fn write_device(dev: &str, data: &[u8]) -> Result<()> {
    use std::io::Write;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .open(dev)
        .with_context(|| format!("open {dev} for writing"))?;
    f.write_all(data).with_context(|| format!("write {dev}"))?;
    f.sync_all().with_context(|| format!("fsync {dev}"))?;
    Ok(())
}

/// Size in bytes of a block device (seek to its end).
pub fn device_size(dev: &str) -> Result<u64> {
    use std::io::{Seek, SeekFrom};
    let mut f = std::fs::File::open(dev).with_context(|| format!("open {dev}"))?;
    Ok(f.seek(SeekFrom::End(0))?)
}

/// Undo stack for a test: commands pushed as resources are created run in
/// reverse order on drop (also when the test panics), best effort.
#[derive(Default)]
pub struct Cleanup {
    steps: Vec<Vec<String>>,
}

impl Cleanup {
    pub fn new() -> Self {
        Self::default()
    }

    /// Registers a command to run at drop time.
    pub fn push(&mut self, argv: &[&str]) {
        self.steps
            .push(argv.iter().map(|s| s.to_string()).collect());
    }
}

impl Drop for Cleanup {
    fn drop(&mut self) {
        while let Some(step) = self.steps.pop() {
            let argv: Vec<&str> = step.iter().map(String::as_str).collect();
            cleanup(&argv);
        }
    }
}

/// LVM's `--config` for commands that activate LVs: no dmeventd in the guest.
pub const LVM_NO_MONITOR: &str = "activation { monitoring = 0 }";

/// Parses an LVM `--reportformat json` report and returns the rows of `kind`
/// (`lv`, `vg`, `pv`).
pub fn lvm_report(argv: &[&str], kind: &str) -> Result<Vec<serde_json::Value>> {
    let out = run(argv)?;
    let v: serde_json::Value =
        serde_json::from_str(&out.stdout).with_context(|| format!("json of {argv:?}"))?;
    let rows = v["report"][0][kind]
        .as_array()
        .with_context(|| format!("no report[0].{kind} in {}", out.stdout))?;
    Ok(rows.clone())
}

/// A numeric field of an LVM json row (`--units b --nosuffix` prints strings).
pub fn lvm_num(row: &serde_json::Value, field: &str) -> u64 {
    row[field]
        .as_str()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or_else(|| panic!("field {field} of {row}"))
}

/// Prints how long each step of a test took (visible with `--nocapture` and
/// on failure): under TCG these figures tell where tier-2 time goes.
pub struct Laps {
    name: &'static str,
    start: std::time::Instant,
    last: std::time::Instant,
}

impl Laps {
    pub fn new(name: &'static str) -> Self {
        let now = std::time::Instant::now();
        Laps {
            name,
            start: now,
            last: now,
        }
    }

    pub fn lap(&mut self, step: &str) {
        let now = std::time::Instant::now();
        println!(
            "[{}] {step}: {:.2}s (total {:.1}s)",
            self.name,
            (now - self.last).as_secs_f64(),
            (now - self.start).as_secs_f64()
        );
        self.last = now;
    }
}
