//! Shared helpers of the binary's tests: start `hwameistor standalone` as a child process
//! and run hwameictl against it.
//!
//! The command runner (`hwameistor_exec::Runner`) runs commands to completion, but a server
//! must keep running while a test talks to it, so this module spawns it with
//! `std::process::Command` directly (test-only; the child is killed on drop).

#![allow(clippy::disallowed_methods, dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use serde_json::{Value, json};

pub const BIN: &str = env!("CARGO_BIN_EXE_hwameistor");

/// A running `hwameistor standalone`; killed if the test fails before stopping it.
pub struct Server {
    child: Option<Child>,
    pub dir: PathBuf,
    pub url: String,
}

impl Server {
    pub fn start(dir: &Path, extra: &[&str]) -> Server {
        let log = std::fs::File::create(dir.join("server.log")).unwrap();
        let mut args = vec![
            "standalone",
            "--data-dir",
            dir.to_str().unwrap(),
            "--listen",
            "127.0.0.1:0",
        ];
        args.extend_from_slice(extra);
        let child = Command::new(BIN)
            .args(&args)
            .env("HWAMEISTOR_LOG", "info")
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap();
        let pid = child.id();
        let mut server = Server {
            child: Some(child),
            dir: dir.to_path_buf(),
            url: String::new(),
        };
        // the tier-2 guest (qemu TCG) starts everything about ten times slower
        let startup = if std::env::var("VM_GUEST").as_deref() == Ok("1") {
            120
        } else {
            30
        };
        let deadline = Instant::now() + Duration::from_secs(startup);
        loop {
            let info = std::fs::read_to_string(dir.join("server.json"))
                .ok()
                .and_then(|t| serde_json::from_str::<Value>(&t).ok());
            if let Some(info) = info.filter(|i| i["pid"] == json!(pid)) {
                server.url = info["url"].as_str().unwrap().to_string();
                break;
            }
            if let Some(status) = server.child.as_mut().unwrap().try_wait().unwrap() {
                panic!("server exited early with {status}; log:\n{}", server.log());
            }
            assert!(
                Instant::now() < deadline,
                "server did not write server.json; log:\n{}",
                server.log()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        server
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().map(Child::id).unwrap_or_default()
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("server.log")).unwrap_or_default()
    }

    /// Send `sig` and wait for the exit status.
    pub fn stop(mut self, sig: Signal) -> ExitStatus {
        let mut child = self.child.take().unwrap();
        kill(Pid::from_raw(child.id() as i32), sig).unwrap();
        let grace = if std::env::var("VM_GUEST").as_deref() == Ok("1") {
            120
        } else {
            30
        };
        let deadline = Instant::now() + Duration::from_secs(grace);
        loop {
            if let Some(status) = child.try_wait().unwrap() {
                return status;
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                panic!(
                    "server did not stop within {grace} s of {sig}; log:\n{}",
                    self.log()
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// Run hwameictl (the library the `hwameictl` binary wraps) with `--data-dir`.
pub async fn ctl(dir: &Path, args: &[&str]) -> (i32, String, String) {
    let mut argv = vec!["hwameictl", "--data-dir", dir.to_str().unwrap()];
    argv.extend_from_slice(args);
    let (mut out, mut err) = (Vec::new(), Vec::new());
    let code = hwameistor_cli::main_with_args(argv, &mut out, &mut err).await;
    (
        code,
        String::from_utf8(out).unwrap(),
        String::from_utf8(err).unwrap(),
    )
}

/// Run hwameictl with `args` until it succeeds with an output `ok` accepts; that output.
/// Panics after `secs` with the last output.
pub async fn wait_ctl(
    dir: &Path,
    args: &[&str],
    what: &str,
    secs: u64,
    ok: impl Fn(&str) -> bool,
) -> String {
    let deadline = Instant::now() + Duration::from_secs(secs);
    loop {
        let (code, out, err) = ctl(dir, args).await;
        if code == 0 && ok(&out) {
            return out;
        }
        assert!(
            Instant::now() < deadline,
            "{what}: last output {out:?}, {err:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}
