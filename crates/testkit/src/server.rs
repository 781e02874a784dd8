//! The `hwameistor standalone --data-dir DIR` fixture.
//!
//! The command runner runs commands to completion, but a server must keep running while a
//! test talks to it, so this module spawns it with `std::process::Command` (test-only; the
//! child is killed on drop).

use std::path::{Path, PathBuf};
use std::process::{Child, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use serde_json::{Value, json};

use crate::sandbox::release_blocking;

/// A running `hwameistor standalone`. Killed on drop if the test did not [`stop`] it; with
/// [`release_on_drop`] the drop also unmounts and detaches the loop devices left under the
/// data directory (what `--demo` creates).
///
/// [`stop`]: Standalone::stop
/// [`release_on_drop`]: Standalone::release_on_drop
#[derive(Debug)]
pub struct Standalone {
    child: Option<Child>,
    release: bool,
    /// The data directory.
    pub dir: PathBuf,
    /// The REST URL from `server.json`.
    pub url: String,
}

impl Standalone {
    /// Start `bin standalone --data-dir DIR --listen 127.0.0.1:0 EXTRA...` (the log goes to
    /// `DIR/server.log`) and wait up to 30 s for it to write `DIR/server.json` with its pid.
    /// Panics (fails the test) with the log if it exits early or never gets ready.
    ///
    /// `bin` is the binary under test, `env!("CARGO_BIN_EXE_hwameistor")` in the binary's own
    /// tests.
    pub fn start(bin: impl AsRef<Path>, dir: &Path, extra: &[&str]) -> Standalone {
        let log = std::fs::File::create(dir.join("server.log")).expect("create server.log");
        let mut args = vec![
            "standalone",
            "--data-dir",
            dir.to_str().expect("UTF-8 data dir"),
            "--listen",
            "127.0.0.1:0",
        ];
        args.extend_from_slice(extra);
        // A long-running child the run-to-completion Runner cannot hold (see module doc).
        #[allow(clippy::disallowed_methods)]
        let child = std::process::Command::new(bin.as_ref())
            .args(&args)
            .env("HWAMEISTOR_LOG", "info")
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("spawn hwameistor standalone");
        let pid = child.id();
        let mut server = Standalone {
            child: Some(child),
            release: false,
            dir: dir.to_path_buf(),
            url: String::new(),
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let info = std::fs::read_to_string(dir.join("server.json"))
                .ok()
                .and_then(|t| serde_json::from_str::<Value>(&t).ok());
            if let Some(info) = info.filter(|i| i["pid"] == json!(pid)) {
                server.url = info["url"].as_str().unwrap_or_default().to_string();
                break;
            }
            if let Some(status) = server
                .child
                .as_mut()
                .and_then(|c| c.try_wait().ok().flatten())
            {
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

    /// Also release mounts and loop devices under the data directory on drop.
    pub fn release_on_drop(mut self) -> Self {
        self.release = true;
        self
    }

    /// The server's pid (0 once stopped).
    pub fn pid(&self) -> u32 {
        self.child.as_ref().map(Child::id).unwrap_or_default()
    }

    /// The server's log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("server.log")).unwrap_or_default()
    }

    /// Send `sig` and wait up to 30 s for the exit status (then kill and panic with the log).
    pub fn stop(&mut self, sig: Signal) -> ExitStatus {
        let mut child = self.child.take().expect("server already stopped");
        kill(Pid::from_raw(child.id() as i32), sig).expect("signal the server");
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(status) = child.try_wait().expect("wait for the server") {
                return status;
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                panic!(
                    "server did not stop within 30 s of {sig}; log:\n{}",
                    self.log()
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Standalone {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
        if self.release {
            release_blocking(&self.dir);
        }
    }
}
