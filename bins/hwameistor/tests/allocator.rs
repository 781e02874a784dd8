//! The allocator settings the server re-executes itself with (`src/alloc.rs`): jemalloc must
//! accept every option of the built-in `_RJEM_MALLOC_CONF`, since it only warns on stderr
//! about one it does not know and then runs with its default for it.
//!
//! The binary runs with `std::process::Command` (test-only), as in `standalone.rs`.

#![cfg(feature = "jemalloc")]
#![allow(clippy::disallowed_methods)]

use std::process::Command;

const BIN: &str = env!("CARGO_BIN_EXE_hwameistor");

/// Run `hwameistor node` (re-executes with the allocator settings, then says it is not
/// implemented and exits 2), with `_RJEM_MALLOC_CONF` set to `conf` or unset; its stderr.
fn node_stderr(conf: Option<&str>) -> String {
    let mut cmd = Command::new(BIN);
    cmd.arg("node").env_remove("_RJEM_MALLOC_CONF");
    if let Some(c) = conf {
        cmd.env("_RJEM_MALLOC_CONF", c);
    }
    let out = cmd.output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(out.status.code(), Some(2), "stderr: {err}");
    assert!(err.contains("not implemented"), "stderr: {err}");
    err
}

#[test]
fn jemalloc_accepts_the_built_in_settings() {
    let err = node_stderr(None);
    assert!(!err.contains("<jemalloc>"), "jemalloc complained: {err}");
}

#[test]
fn jemalloc_reports_an_unknown_option() {
    // The check above would see a typo in the settings: jemalloc names what it rejects.
    let err = node_stderr(Some("background_thread:true,no_such_option:1"));
    assert!(
        err.contains("<jemalloc>") && err.contains("no_such_option"),
        "stderr: {err}"
    );
}
