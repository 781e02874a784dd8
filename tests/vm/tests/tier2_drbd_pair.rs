//! Tier 2, two guests: DRBD replication of an LVM volume between two real
//! kernels joined by a private virtual link (run-pair.sh). Debian's kernel
//! ships DRBD 8.4; drbd-utils 9 drives it through its 8.4 compatibility tools
//! (`drbdadm` dispatches to `drbdadm-84`). Both guests run this same test;
//! `VM_ROLE` says which side it plays:
//!
//! * A: promotes with `--force` (full initial sync), writes a deterministic
//!   pattern with protocol C, demotes, tells B the checksum over TCP.
//! * B: waits for that message, promotes, reads the pattern back from its own
//!   copy, compares checksums, demotes and answers A.

mod common;

use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail, ensure};
use common::{
    Cleanup, LVM_NO_MONITOR, Laps, guest, md5_hex, pattern, read_device, run, write_device,
};
use hwameistor_vmtests::{DiskKind, Role};

const CONF: &str = "/tmp/hwt_drbd.conf";
const RES: &str = "r0";
const DEV: &str = "/dev/drbd0";
const VG: &str = "hwt_drbd";
const DATA_LEN: usize = 8 << 20;
const SEED: u64 = 0xd7bd_2024;
/// Port of the test's own coordination channel (DRBD itself uses 7789).
const CTL_PORT: u16 = 7790;

fn drbdadm(args: &[&str]) -> Result<String> {
    let mut argv = vec!["drbdadm", "-c", CONF];
    argv.extend_from_slice(args);
    Ok(run(&argv)?.stdout)
}

fn proc_drbd() -> String {
    std::fs::read_to_string("/proc/drbd").unwrap_or_default()
}

/// Waits until /proc/drbd contains every fragment (e.g. `cs:Connected`).
fn wait_drbd(fragments: &[&str], timeout: Duration) -> Result<Duration> {
    let start = Instant::now();
    loop {
        let s = proc_drbd();
        if fragments.iter().all(|f| s.contains(f)) {
            return Ok(start.elapsed());
        }
        if start.elapsed() > timeout {
            bail!("timeout after {timeout:?} waiting for {fragments:?} in /proc/drbd:\n{s}");
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

fn config(a: &str, a_ip: &str, b: &str, b_ip: &str) -> String {
    format!(
        "global {{ usage-count no; }}
common {{
  net {{ protocol C; }}
  disk {{ c-plan-ahead 0; resync-rate 100M; }}
}}
resource {RES} {{
  device {DEV};
  disk /dev/{VG}/{RES};
  meta-disk internal;
  on {a} {{ address {a_ip}:7789; }}
  on {b} {{ address {b_ip}:7789; }}
}}
"
    )
}

#[test]
#[ignore = "tier 2: runs inside the qemu guest; run by .ci/run via tests/vm"]
fn drbd_on_lvm_syncs_replicates_and_switches_over() -> Result<()> {
    let g = guest();
    let net = g
        .pair()
        .context("two-guest test: run it via tests/vm/run-pair.sh (or a *_pair target)")?
        .clone();
    let mut laps = Laps::new(if g.role == Role::A {
        "drbd a"
    } else {
        "drbd b"
    });
    let version = proc_drbd();
    ensure!(
        version.starts_with("version: 8.4"),
        "expected the in-tree DRBD 8.4: {version}"
    );

    // B listens for A's hand-over message before anything can happen.
    let listener = if g.role == Role::B {
        let l = TcpListener::bind((net.ip, CTL_PORT)).context("bind control port")?;
        l.set_nonblocking(true)?;
        Some(l)
    } else {
        None
    };

    let disk = g.disk(DiskKind::Virtio).dev.to_string_lossy().into_owned();
    let mut undo = Cleanup::new();
    run(&["pvcreate", "-ff", "-y", &disk])?;
    undo.push(&["pvremove", "-ff", "-y", &disk]);
    run(&["vgcreate", VG, &disk])?;
    undo.push(&["vgremove", "-ff", "-y", VG]);
    run(&[
        "lvcreate",
        "-y",
        "--config",
        LVM_NO_MONITOR,
        "-n",
        RES,
        "-L",
        "32m",
        VG,
    ])?;

    let (a, a_ip, b, b_ip) = match g.role {
        Role::A => (&g.hostname, net.ip, &net.peer_hostname, net.peer_ip),
        _ => (&net.peer_hostname, net.peer_ip, &g.hostname, net.ip),
    };
    std::fs::write(CONF, config(a, &a_ip.to_string(), b, &b_ip.to_string()))?;
    drbdadm(&["create-md", "--force", RES])?;
    drbdadm(&["up", RES])?;
    undo.push(&["drbdadm", "-c", CONF, "down", RES]);
    laps.lap("lvm backing lv + drbd metadata + up");
    let t = wait_drbd(&["cs:Connected"], Duration::from_secs(180))?;
    laps.lap(&format!(
        "connected to peer (waited {:.1}s)",
        t.as_secs_f64()
    ));
    // drbd-utils 9 on an 8.4 kernel: `drbdadm status` works (events2 too)
    let status = drbdadm(&["status", RES])?;
    ensure!(status.contains("role:Secondary"), "{status}");

    let data = pattern(SEED, DATA_LEN);
    let want = md5_hex(&data);
    match g.role {
        Role::A => {
            drbdadm(&["primary", "--force", RES])?;
            let t = wait_drbd(
                &["ro:Primary/Secondary", "ds:UpToDate/UpToDate"],
                Duration::from_secs(300),
            )?;
            laps.lap(&format!(
                "initial full sync of 32 MiB ({:.1}s)",
                t.as_secs_f64()
            ));
            write_device(DEV, &data)?;
            ensure!(
                proc_drbd().contains("ds:UpToDate/UpToDate"),
                "peer fell behind: {}",
                proc_drbd()
            );
            laps.lap("8 MiB written with protocol C");
            drbdadm(&["secondary", RES])?;
            wait_drbd(&["ro:Secondary/Secondary"], Duration::from_secs(30))?;
            // hand over to B, wait for its verdict
            let deadline = Instant::now() + Duration::from_secs(120);
            let mut stream = loop {
                match TcpStream::connect((net.peer_ip, CTL_PORT)) {
                    Ok(s) => break s,
                    Err(e) if Instant::now() > deadline => return Err(e).context("connect to B"),
                    Err(_) => std::thread::sleep(Duration::from_millis(500)),
                }
            };
            stream.set_read_timeout(Some(Duration::from_secs(300)))?;
            writeln!(stream, "DEMOTED {want}")?;
            let mut reply = String::new();
            BufReader::new(&stream)
                .read_line(&mut reply)
                .context("B's verdict")?;
            laps.lap("demoted; B promoted and verified");
            ensure!(
                reply.trim() == format!("VERIFIED {want}"),
                "B answered {reply:?}, want md5 {want}"
            );
        }
        _ => {
            let listener = listener.expect("B listens");
            let deadline = Instant::now() + Duration::from_secs(540);
            let (stream, _) = loop {
                match listener.accept() {
                    Ok(s) => break s,
                    Err(e)
                        if e.kind() == std::io::ErrorKind::WouldBlock
                            && Instant::now() < deadline =>
                    {
                        std::thread::sleep(Duration::from_millis(200))
                    }
                    Err(e) => return Err(e).context("waiting for A's hand-over"),
                }
            };
            stream.set_nonblocking(false)?;
            stream.set_read_timeout(Some(Duration::from_secs(60)))?;
            let mut msg = String::new();
            BufReader::new(&stream).read_line(&mut msg)?;
            let a_md5 = msg
                .trim()
                .strip_prefix("DEMOTED ")
                .context("bad hand-over")?
                .to_string();
            ensure!(a_md5 == want, "A wrote md5 {a_md5}, pattern is {want}");
            let s = proc_drbd();
            ensure!(
                s.contains("ro:Secondary/Secondary") && s.contains("ds:UpToDate/UpToDate"),
                "{s}"
            );
            laps.lap("A wrote and demoted; our copy is UpToDate");
            drbdadm(&["primary", RES])?;
            let got = md5_hex(&read_device(DEV, DATA_LEN)?);
            drbdadm(&["secondary", RES])?;
            laps.lap("promoted, read 8 MiB, demoted");
            let mut w = &stream;
            if got == want {
                writeln!(w, "VERIFIED {got}")?;
            } else {
                writeln!(w, "MISMATCH {got}")?;
                bail!("replicated data differs: md5 {got}, want {want}");
            }
        }
    }
    Ok(())
}
